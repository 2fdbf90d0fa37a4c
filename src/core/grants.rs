//! Module-level permissions: which agent may do what on which names. Pure: the
//! caller supplies the policy, the grants of the name's namespace and the agent.

#![forbid(unsafe_code)]

use std::fmt;

use super::names::local_part;

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Send,
    Read,
    Subscribe,
    Publish,
    Admin,
    Impersonate,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::Send,
        Permission::Read,
        Permission::Subscribe,
        Permission::Publish,
        Permission::Admin,
        Permission::Impersonate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Send => "send",
            Permission::Read => "read",
            Permission::Subscribe => "subscribe",
            Permission::Publish => "publish",
            Permission::Admin => "admin",
            Permission::Impersonate => "impersonate",
        }
    }

    pub fn parse(s: &[u8]) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str().as_bytes().eq_ignore_ascii_case(s))
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Permission> {
        Permission::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Everyone may send, subscribe and publish; reading needs ownership or a grant.
    Open,
    /// Everything needs a grant, except reading one's own mailbox.
    Closed,
}

/// One grant: `agent` (or `*` for every agent) holds `permission` on names matching `pattern`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    pub agent: Vec<u8>,
    pub permission: Permission,
    pub pattern: Vec<u8>,
}

/// Whether `agent` may use `permission` on `name`.
pub fn allowed<'g>(
    policy: Policy,
    grants: impl IntoIterator<Item = &'g Grant>,
    agent: &[u8],
    permission: Permission,
    name: &[u8],
) -> bool {
    if permission == Permission::Read && local_part(name) == agent {
        return true;
    }
    if policy == Policy::Open
        && matches!(permission, Permission::Send | Permission::Subscribe | Permission::Publish)
    {
        return true;
    }
    grants.into_iter().any(|g| {
        g.permission == permission && (g.agent == agent || g.agent == b"*") && glob_match(&g.pattern, name)
    })
}

/// Redis-style glob: `*` any run, `?` one byte, `[abc]`/`[a-z]`/`[^a]` classes,
/// `\x` a literal. Iterative with one backtrack point, so linear-ish and never
/// recursive.
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pattern, p, name[n]) {
                        if matched {
                            p = next;
                            n += 1;
                            continue;
                        }
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == name[n] {
                        p += 2;
                        n += 1;
                        continue;
                    }
                }
                c => {
                    if c == name[n] {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches one byte against the class starting at `pattern[start] == b'['`;
/// returns (matched, index after the class), or None for an unclosed class.
fn class_match(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let b = *pattern.get(i)?;
        if b == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if b == b'\\' {
            i += 1;
            matched |= *pattern.get(i)? == c;
            i += 1;
        } else if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&e| e != b']') {
            let (lo, hi) = (b.min(pattern[i + 2]), b.max(pattern[i + 2]));
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= b == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(agent: &str, p: Permission, pattern: &str) -> Grant {
        Grant { agent: agent.into(), permission: p, pattern: pattern.into() }
    }

    #[test]
    fn globs() {
        for (pattern, name, expect) in [
            ("*", "anything", true),
            ("*", "", true),
            ("{t}*", "{t}alice", true),
            ("{t}*", "{u}alice", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("*.urgent", "x.y.urgent", true),
            ("[ab]x", "bx", true),
            ("[ab]x", "cx", false),
            ("[^ab]x", "cx", true),
            ("[a-c]x", "bx", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("[", "[", false),
            ("a**b", "ab", true),
        ] {
            assert_eq!(glob_match(pattern.as_bytes(), name.as_bytes()), expect, "{pattern} vs {name}");
        }
    }

    #[test]
    fn long_globs_do_not_blow_up() {
        let pattern = "*a".repeat(50);
        let name = "a".repeat(10_000) + "b";
        assert!(!glob_match(pattern.as_bytes(), name.as_bytes()));
    }

    #[test]
    fn policies_and_ownership() {
        let grants = [g("bob", Permission::Read, "{t}alice"), g("*", Permission::Admin, "{t}shared*")];
        // Everyone reads their own mailbox, under both policies.
        for policy in [Policy::Open, Policy::Closed] {
            assert!(allowed(policy, &grants, b"alice", Permission::Read, b"{t}alice"));
            assert!(allowed(policy, &grants, b"alice", Permission::Read, b"alice"));
            assert!(!allowed(policy, &grants, b"carol", Permission::Read, b"{t}alice"));
            assert!(allowed(policy, &grants, b"bob", Permission::Read, b"{t}alice"));
            assert!(allowed(policy, &grants, b"zed", Permission::Admin, b"{t}shared-1"));
            assert!(!allowed(policy, &grants, b"zed", Permission::Admin, b"{t}other"));
            assert!(!allowed(policy, &grants, b"zed", Permission::Impersonate, b"alice"));
        }
        assert!(allowed(Policy::Open, &grants, b"carol", Permission::Send, b"{t}alice"));
        assert!(allowed(Policy::Open, &grants, b"carol", Permission::Publish, b"{t}x.y"));
        assert!(!allowed(Policy::Closed, &grants, b"carol", Permission::Send, b"{t}alice"));
        assert!(!allowed(Policy::Closed, &grants, b"carol", Permission::Subscribe, b"{t}x.y"));
    }

    #[test]
    fn permission_names_and_codes() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str().to_uppercase().as_bytes()), Some(p));
            assert_eq!(Permission::from_code(p.code()), Some(p));
        }
        assert_eq!(Permission::parse(b"fly"), None);
        assert_eq!(Permission::from_code(6), None);
    }
}
