-- wrk: GET a random key of the loaded set, key:000000000000 .. key:000000099999 (the names
-- redis-benchmark -r uses). Arguments after --: path prefix and suffix, for webdis's URLs.
local prefix, suffix, keys = "/", "", 100000

function init(args)
  if args[1] then prefix = args[1] end
  if args[2] then suffix = args[2] end
  math.randomseed(os.time())
end

function request()
  return wrk.format("GET", prefix .. string.format("key:%012d", math.random(0, keys - 1)) .. suffix)
end
