-- wrk: a read (count=1) then an ack of what it got, over and over; each thread keeps the ids
-- its reads got and acks them with its next requests. Two requests per read + ack cycle.
local path = wrk.path
local pending = {}

function request()
    local id = table.remove(pending)
    if id then
        -- Headers given to wrk.format replace wrk.headers (the token): copy them.
        local headers = { ["Content-Type"] = "application/json" }
        for k, v in pairs(wrk.headers) do
            headers[k] = v
        end
        return wrk.format("POST", (path:gsub("/messages$", "/ack")), headers, '{"ids":["' .. id .. '"]}')
    end
    return wrk.format("GET", path .. "?count=1")
end

function response(status, headers, body)
    local id = body:match('"messages":%[{"id":"([0-9]+%-[0-9]+)"')
    if id then
        table.insert(pending, id)
    end
end

function done(summary, latency, requests)
    io.write(string.format("RESULT errors=%d non2xx=%d\n",
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        summary.errors.status))
end
