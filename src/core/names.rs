//! How names are built and read: the hash tag that puts a name in a cluster slot,
//! the agent part of a mailbox name, an agent's own mailbox, and the key that
//! holds a namespace.

#![forbid(unsafe_code)]

/// The hash tag of a name as Redis Cluster reads it: the bytes between the first
/// `{` and the first `}` after it, when not empty.
pub fn hash_tag(name: &[u8]) -> Option<&[u8]> {
    let open = name.iter().position(|&b| b == b'{')?;
    let rest = &name[open + 1..];
    let close = rest.iter().position(|&b| b == b'}')?;
    (close > 0).then(|| &rest[..close])
}

/// A name without its `{tag}`: the agent of a mailbox, the path of a topic.
pub fn local_part(name: &[u8]) -> Vec<u8> {
    let Some(open) = name.iter().position(|&b| b == b'{') else { return name.to_vec() };
    let rest = &name[open + 1..];
    match rest.iter().position(|&b| b == b'}') {
        Some(close) if close > 0 => {
            let mut out = name[..open].to_vec();
            out.extend_from_slice(&rest[close + 1..]);
            out
        }
        _ => name.to_vec(),
    }
}

/// The mailbox an agent owns in the namespace of `name`: `{tag}agent`, or `agent`
/// in the default namespace.
pub fn agent_mailbox(name: &[u8], agent: &[u8]) -> Vec<u8> {
    match hash_tag(name) {
        Some(tag) => {
            let mut out = Vec::with_capacity(tag.len() + agent.len() + 2);
            out.push(b'{');
            out.extend_from_slice(tag);
            out.push(b'}');
            out.extend_from_slice(agent);
            out
        }
        None => agent.to_vec(),
    }
}

/// The key of the default namespace, and the start of every namespace key.
pub const NAMESPACE_KEY_PREFIX: &[u8] = b"mailbox:ns";

/// The key that holds the namespace of `name`.
pub fn namespace_key(name: &[u8]) -> Vec<u8> {
    let mut key = NAMESPACE_KEY_PREFIX.to_vec();
    if let Some(tag) = hash_tag(name) {
        key.extend_from_slice(b":{");
        key.extend_from_slice(tag);
        key.push(b'}');
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(hash_tag(b"{team1}alice"), Some(&b"team1"[..]));
        assert_eq!(hash_tag(b"alice"), None);
        assert_eq!(hash_tag(b"{}alice"), None);
        assert_eq!(hash_tag(b"a{b}c{d}"), Some(&b"b"[..]));
        assert_eq!(local_part(b"{team1}research.papers"), b"research.papers");
        assert_eq!(local_part(b"alice"), b"alice");
        assert_eq!(local_part(b"{}alice"), b"{}alice");
        assert_eq!(agent_mailbox(b"{t}bob", b"alice"), b"{t}alice");
        assert_eq!(agent_mailbox(b"bob", b"alice"), b"alice");
        assert_eq!(namespace_key(b"{t}bob"), b"mailbox:ns:{t}");
        assert_eq!(namespace_key(b"bob"), b"mailbox:ns");
        // The namespace key lies in the namespace's slot.
        assert_eq!(hash_tag(&namespace_key(b"{t}bob")), Some(&b"t"[..]));
    }
}
