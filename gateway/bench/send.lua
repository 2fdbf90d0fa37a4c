-- wrk: POST one message per request to the mailbox in the URL (token in the header given with -H).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"payload":"' .. string.rep("x", 100) .. '"}'

function done(summary, latency, requests)
    io.write(string.format("RESULT errors=%d non2xx=%d\n",
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        summary.errors.status))
end
