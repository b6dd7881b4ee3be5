-- wrk script for bench/ingest.sh: posts the callbacks of a converted
-- `callwatch simulate` trace (one "target<TAB>body" line each) round-robin.
-- Thread k of n takes lines k, k+n, k+2n..., so no callback is sent twice
-- until a thread wraps around its share (then dedup answers it).
-- Env: TRACE_TSV (the converted trace), WRK_THREADS (= wrk -t),
-- WRK_DELAY_MS (optional: pause per connection between requests, to run
-- below the maximum rate).

local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  local n = tonumber(os.getenv("WRK_THREADS") or "1")
  requests = {}
  local i = 0
  for line in io.lines(os.getenv("TRACE_TSV")) do
    if i % n == id then
      local tab = line:find("\t", 1, true)
      requests[#requests + 1] = wrk.format("POST", line:sub(1, tab - 1),
        { ["Host"] = "127.0.0.1", ["Content-Type"] = "application/json" },
        line:sub(tab + 1))
    end
    i = i + 1
  end
  idx = 0
end

function request()
  idx = idx % #requests + 1
  return requests[idx]
end

local pause = tonumber(os.getenv("WRK_DELAY_MS") or "")
if pause then
  function delay()
    return pause
  end
end
