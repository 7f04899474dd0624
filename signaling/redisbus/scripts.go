package redisbus

import "github.com/redis/rueidis"

// Every script gets ARGV[1] = the key prefix and ARGV[2] = the calling
// node's id, then its own arguments, then (removed from ARGV before the
// script's own code sees it) its deadline in Redis's time, in ms (0: none).
// A script that starts past its deadline refuses (ICEGATE_LATE) and writes
// nothing: its caller has given up and told its client the operation
// failed, so doing it now would make that answer false (an ack or a
// message after a cluster-unavailable error). Scripts compute the keys they touch
// from the prefix (so they run on one Redis or a Sentinel-managed primary,
// not on Redis Cluster; doc.go says what that would take). A refusal is an
// error reply "ICEGATE_<CODE>" raised before the script writes anything, so
// a refused operation changes nothing (Redis does not roll a script back).
// Time is Redis's (TIME), so the nodes' clocks do not matter.
const lib = `
local DEADLINE = tonumber(table.remove(ARGV))
local P = ARGV[1]
local SELF = ARGV[2]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function skey(id) return P .. 's:' .. id end
local function fail(code) return redis.error_reply('ICEGATE_' .. code) end
if DEADLINE > 0 and now_ms() > DEADLINE then return fail('LATE') end
-- quote matches Go's strconv.Quote for printable ASCII (session ids are
-- base32); anything else goes through cjson, which is valid JSON too.
local function quote(s)
  if string.find(s, '^[%w%-_%.:~]*$') then return '"' .. s .. '"' end
  return cjson.encode(s)
end
-- SFIELDS are what append reads of a session; a caller that has read them
-- already (HMGET skey(id) SFIELDS, nothing written to it since) passes
-- them as f.
local SFIELDS = {'node', 'held', 'written', 'seq', 'q', 'k'}
-- append logs body as session id's next message and publishes it to the
-- node holding it. It returns the seq, false when the session is held and
-- its queue is full, nil when there is no such session.
local function append(id, body, f)
  local sk = skey(id)
  f = f or redis.call('HMGET', sk, unpack(SFIELDS))
  if not f[4] then return nil end
  local seq = tonumber(f[4]) + 1
  local q = tonumber(f[5])
  if f[2] == '1' and seq - tonumber(f[3]) > q then return false end
  redis.call('HSET', sk, 'seq', seq)
  -- Approximate trimming (whole stream nodes) costs far less than exact;
  -- replay serves only the last k+q, so the bound holds all the same.
  redis.call('XADD', P .. 'l:' .. id, 'MAXLEN', '~', tonumber(f[6]) + q, seq .. '-1', 'b', body)
  if f[2] ~= '1' and f[1] and f[1] ~= '' then
    redis.call('PUBLISH', P .. 'node:' .. f[1], 'd' .. seq .. ' ' .. #id .. ' ' .. id .. body)
  end
  return seq
end
-- replay returns {from, gap, msgs}: the messages after seq after.
local function replay(id, after)
  local f = redis.call('HMGET', skey(id), 'seq', 'q', 'k')
  local seq = tonumber(f[1])
  if after >= seq then return {seq + 1, 0, {}} end
  local first = math.max(after + 1, seq - (tonumber(f[2]) or 0) - (tonumber(f[3]) or 0) + 1)
  local es = redis.call('XRANGE', P .. 'l:' .. id, string.format('%d', first), '+')
  local from, msgs = seq + 1, {}
  for i, e in ipairs(es) do
    if i == 1 then from = tonumber(string.match(e[1], '^(%d+)')) end
    msgs[i] = e[2][2]
  end
  local gap = 0
  if from > after + 1 then gap = 1 end
  return {from, gap, msgs}
end
-- leave takes id out of room; the others get the PeerLeft body it joined
-- with (a held member whose queue is full misses it).
local function leave(id, room)
  local rk, ok = P .. 'rm:' .. room, P .. 'ro:' .. room
  if not redis.call('ZSCORE', ok, id) then return false end
  local body = redis.call('HGET', rk, 'l|' .. id)
  redis.call('ZREM', ok, id)
  redis.call('HDEL', rk, 'm|' .. id, 'l|' .. id, 't|' .. id)
  redis.call('ZREM', P .. 'r:' .. id, room)
  local others = redis.call('ZRANGE', ok, 0, -1)
  if #others == 0 then
    redis.call('DEL', rk, ok)
    redis.call('SREM', P .. 'rooms', room)
  elseif body then
    for _, o in ipairs(others) do append(o, body) end
  end
  return true
end
-- remove ends session id for good and remembers it as gone.
local function remove(id)
  local sk = skey(id)
  local f = redis.call('HMGET', sk, 'node', 'user', 'tok', 'ptok', 'name', 'seq')
  if not f[6] then return 0 end
  for _, room in ipairs(redis.call('ZRANGE', P .. 'r:' .. id, 0, -1)) do leave(id, room) end
  for i = 3, 4 do
    if f[i] and f[i] ~= '' and redis.call('GET', P .. 't:' .. f[i]) == id then redis.call('DEL', P .. 't:' .. f[i]) end
  end
  if f[5] and f[5] ~= '' and redis.call('GET', P .. 'n:' .. f[5]) == id then redis.call('DEL', P .. 'n:' .. f[5]) end
  if f[2] and f[2] ~= '' then redis.call('SREM', P .. 'u:' .. f[2], id) end
  if f[1] and f[1] ~= '' then redis.call('SREM', P .. 'ns:' .. f[1], id) end
  redis.call('ZREM', P .. 'held', id)
  redis.call('DEL', sk, P .. 'l:' .. id, P .. 'r:' .. id)
  redis.call('SET', P .. 'gone:' .. id, '1', 'PX', 600000)
  return 1
end
-- unstall keeps the heartbeats' clock honest when Redis itself stalls.
-- Every live node runs a beat or reap script at least every beat period
-- (timeout/3), so a longer gap since the last one of any node means Redis
-- ran none of them (hung, paused, or busy with one long script): time in
-- which no node could beat. The excess over the period is added to every
-- node's last beat, so a stall never counts against a node whose own
-- heartbeat waited in it; a node is dead only when it stayed silent while
-- Redis served the others. Returns the excess (0: no stall).
local function unstall(now, timeout)
  local ck, nk = P .. 'clk', P .. 'nodes'
  local last = tonumber(redis.call('GET', ck))
  redis.call('SET', ck, now)
  if not last then return 0 end
  local excess = now - last - math.floor(timeout / 3)
  if excess <= 0 then return 0 end
  local ns = redis.call('ZRANGE', nk, 0, -1, 'WITHSCORES')
  for i = 1, #ns, 2 do redis.call('ZADD', nk, 'XX', tonumber(ns[i + 1]) + excess, ns[i]) end
  return excess
end
-- takeover turns every session of node into a held one (its grace from its
-- own record), as if each connection had dropped; the reaper removes them.
local function takeover(node, now)
  local ids = redis.call('SMEMBERS', P .. 'ns:' .. node)
  for _, id in ipairs(ids) do
    local sk = skey(id)
    local f = redis.call('HMGET', sk, 'node', 'seq', 'grace')
    if f[2] and f[1] == node then
      local g = tonumber(f[3]) or 0
      if g <= 0 then remove(id) else
        redis.call('HSET', sk, 'node', '', 'held', '1', 'written', f[2])
        redis.call('ZADD', P .. 'held', now + g, id)
      end
    end
  end
  redis.call('DEL', P .. 'ns:' .. node)
  redis.call('ZREM', P .. 'nodes', node)
  return #ids
end
`

func script(body string) *rueidis.Lua { return rueidis.NewLuaScript(lib + body) }

// ARGV: 3 id, 4 user, 5 token, 6 queue, 7 keep, 8 grace ms.
var openScript = script(`
local id = ARGV[3]
local sk = skey(id)
if redis.call('EXISTS', sk) == 1 then return fail('EXISTS') end
redis.call('HSET', sk, 'node', SELF, 'held', '0', 'written', 0, 'user', ARGV[4], 'tok', ARGV[5], 'ptok', '',
  'seq', 0, 'q', ARGV[6], 'k', ARGV[7], 'grace', ARGV[8], 'name', '', 'epoch', 1)
if ARGV[5] ~= '' then redis.call('SET', P .. 't:' .. ARGV[5], id) end
if ARGV[4] ~= '' then redis.call('SADD', P .. 'u:' .. ARGV[4], id) end
redis.call('SADD', P .. 'ns:' .. SELF, id)
redis.call('DEL', P .. 'gone:' .. id)
return 1
`)

// ARGV: 3 token, 4 new token, 5 user, 6 last, 7 queue, 8 keep, 9 grace ms.
// Returns {id, kickSelf, rooms, from, gap, msgs, epoch}.
var resumeScript = script(`
local tok, new = ARGV[3], ARGV[4]
local id = redis.call('GET', P .. 't:' .. tok)
if not id then return fail('UNKNOWN') end
local sk = skey(id)
local f = redis.call('HMGET', sk, 'node', 'held', 'user', 'tok', 'ptok', 'epoch', 'written', 'seq')
if not f[3] then return fail('UNKNOWN') end
if f[3] ~= ARGV[5] then return fail('OTHERUSER') end
local kickSelf = 0
if f[2] == '1' then
  redis.call('ZREM', P .. 'held', id)
elseif f[1] ~= '' then
  redis.call('SREM', P .. 'ns:' .. f[1], id)
  if f[1] == SELF then kickSelf = 1 else
    redis.call('PUBLISH', P .. 'node:' .. f[1], 'k4000:' .. (f[6] or '0') .. ' ' .. #id .. ' ' .. id .. 'replaced by a resumed connection')
  end
end
-- The token used stays valid as the previous one: a drop during this
-- resume loses nothing. Any other old token is forgotten.
for i = 4, 5 do
  if f[i] and f[i] ~= '' and f[i] ~= tok then redis.call('DEL', P .. 't:' .. f[i]) end
end
if new ~= '' then redis.call('SET', P .. 't:' .. new, id) end
redis.call('HSET', sk, 'node', SELF, 'held', '0', 'tok', new, 'ptok', tok, 'q', ARGV[7], 'k', ARGV[8], 'grace', ARGV[9])
redis.call('SADD', P .. 'ns:' .. SELF, id)
local epoch = redis.call('HINCRBY', sk, 'epoch', 1)
-- A last beyond what was ever written to the client (the session's last
-- seq, or for a held one the last its node wrote) is impossible: what was
-- never written is sent; what was is not replayed, and if there is any,
-- that is a gap (the in-process bus answers the same).
local last, lim = tonumber(ARGV[6]), tonumber(f[8])
if f[2] == '1' then lim = tonumber(f[7]) end
local r
if last > lim then
  r = replay(id, lim)
  if lim > 0 then r[2] = 1 end
else
  r = replay(id, last)
end
return {id, kickSelf, redis.call('ZRANGE', P .. 'r:' .. id, 0, -1), r[1], r[2], r[3], epoch}
`)

// ARGV: 3 id, 4 after. Returns {from, gap, msgs}.
var replayScript = script(`
local id = ARGV[3]
if redis.call('EXISTS', skey(id)) == 0 then return fail('UNKNOWN') end
return replay(id, tonumber(ARGV[4]))
`)

// ARGV: 3 id, 4 written, 5 grace ms, 6 epoch. Holding a session another
// node has taken over, or another connection of this node (a later
// epoch), or that is held already, changes nothing.
var holdScript = script(`
local id = ARGV[3]
local sk = skey(id)
local f = redis.call('HMGET', sk, 'node', 'held', 'seq', 'epoch')
-- A session removed meanwhile (the server API's disconnect, say) stays so.
if not f[3] then return 0 end
if f[2] == '1' or f[1] ~= SELF then return 0 end
-- -1: a later connection of this node holds it (the caller keeps
-- tracking it).
if ARGV[6] ~= '0' and f[4] ~= ARGV[6] then return -1 end
local g = tonumber(ARGV[5])
if g <= 0 then return remove(id) end
local w = math.min(tonumber(ARGV[4]), tonumber(f[3]))
redis.call('HSET', sk, 'node', '', 'held', '1', 'written', string.format('%d', w))
redis.call('SREM', P .. 'ns:' .. SELF, id)
redis.call('ZADD', P .. 'held', now_ms() + g, id)
return 1
`)

// ARGV: 3 id, 4 epoch (0: any). Returns 1 when removed, 0 when it was
// gone or another node holds a later epoch, -1 when a later connection of
// this node does.
var removeScript = script(`
if ARGV[4] ~= '0' then
  local f = redis.call('HMGET', skey(ARGV[3]), 'epoch', 'node')
  if f[1] ~= ARGV[4] then
    if f[1] and f[2] == SELF then return -1 end
    return 0
  end
end
return remove(ARGV[3])
`)

// ARGV: 3 id, 4 code, 5 reason. Returns 1 when the kick was sent.
var kickScript = script(`
local id = ARGV[3]
local f = redis.call('HMGET', skey(id), 'node', 'epoch')
local node = f[1]
if not node then return fail('UNKNOWN') end
if node == '' then return 0 end
redis.call('PUBLISH', P .. 'node:' .. node, 'k' .. ARGV[4] .. ':' .. (f[2] or '0') .. ' ' .. #id .. ' ' .. id .. ARGV[5])
return 1
`)

// ARGV: 3 id, 4 room, 5 max, 6 rooms per peer, 7 member, 8 peer-joined,
// 9 peer-left, 10 joined prefix. Returns {again, max, peers}; again is -1
// when the room is full (nothing written).
var joinScript = script(`
local id, room = ARGV[3], ARGV[4]
local rk, ok, mine = P .. 'rm:' .. room, P .. 'ro:' .. room, P .. 'r:' .. id
if redis.call('EXISTS', skey(id)) == 0 then return fail('UNKNOWN') end
local again = redis.call('ZSCORE', mine, room) and 1 or 0
local max
if again == 0 then
  local n = redis.call('ZCARD', ok)
  if n == 0 then max = tonumber(ARGV[5]) else max = tonumber(redis.call('HGET', rk, 'max')) or 0 end
  -- Full: not an error reply, so the cap comes back for the message.
  if max > 0 and n >= max then return {-1, max, {}} end
  local rpp = tonumber(ARGV[6])
  if rpp > 0 and redis.call('ZCARD', mine) >= rpp then return fail('TOOMANY') end
  local c = redis.call('INCR', P .. 'joins')
  if n == 0 then
    redis.call('HSET', rk, 'max', max)
    redis.call('SADD', P .. 'rooms', room)
  end
  redis.call('ZADD', ok, c, id)
  redis.call('HSET', rk, 'm|' .. id, ARGV[7], 'l|' .. id, ARGV[9], 't|' .. id, now_ms())
  redis.call('ZADD', mine, c, room)
else
  max = tonumber(redis.call('HGET', rk, 'max')) or 0
end
local peers, qp, ms = {}, {}, {}
for _, o in ipairs(redis.call('ZRANGE', ok, 0, -1)) do
  if o ~= id then
    peers[#peers + 1] = o
    qp[#qp + 1] = quote(o)
    ms[#ms + 1] = redis.call('HGET', rk, 'm|' .. o)
    if again == 0 then append(o, ARGV[8]) end
  end
end
append(id, ARGV[10] .. '"peers":[' .. table.concat(qp, ',') .. '],"members":[' .. table.concat(ms, ',') .. '],"max_peers":' .. max .. '}')
return {again, max, peers}
`)

// ARGV: 3 id, 4 room, 5 left.
var leaveScript = script(`
local id = ARGV[3]
if not leave(id, ARGV[4]) then return fail('NOTINROOM') end
append(id, ARGV[5])
return 1
`)

// ARGV: 3 from, 4 to, 5 byname, 6 room, 7 anyone, 8 body, 9 has ack,
// 10 ack, 11 has ack-held, 12 ack-held. Returns 1 when the target is held.
var sendScript = script(`
local from, to, room = ARGV[3], ARGV[4], ARGV[6]
-- Both sessions are read once (SFIELDS) and handed to append.
local ff = redis.call('HMGET', skey(from), unpack(SFIELDS))
if not ff[4] then return fail('UNKNOWN') end
if ARGV[5] == '1' then
  to = redis.call('GET', P .. 'n:' .. to)
  if not to then return fail('UNKNOWN') end
end
local f = redis.call('HMGET', skey(to), unpack(SFIELDS))
if not f[4] then
  if redis.call('EXISTS', P .. 'gone:' .. to) == 1 then return fail('GONE') end
  return fail('UNKNOWN')
end
if room ~= '' then
  if not (redis.call('ZSCORE', P .. 'r:' .. from, room) and redis.call('ZSCORE', P .. 'r:' .. to, room)) then
    return fail('NOTSHARED')
  end
elseif ARGV[5] ~= '1' and ARGV[7] ~= '1' then
  local shared = false
  for _, r in ipairs(redis.call('ZRANGE', P .. 'r:' .. from, 0, -1)) do
    if redis.call('ZSCORE', P .. 'r:' .. to, r) then shared = true break end
  end
  if not shared then return fail('NOTSHARED') end
end
local held = f[2] == '1'
if held and tonumber(f[4]) + 1 - tonumber(f[3]) > tonumber(f[5]) then return fail('QUEUEFULL') end
append(to, ARGV[8], f)
-- A message to oneself changed the session append read: read it again.
if to == from then ff = nil end
if held and ARGV[11] == '1' then append(from, ARGV[12], ff)
elseif ARGV[9] == '1' then append(from, ARGV[10], ff) end
return held and 1 or 0
`)

// ARGV: 3 from, 4 room, 5 body, 6 has ack, 7 ack prefix. Returns
// {delivered, dropped}.
var broadcastScript = script(`
local from, ok = ARGV[3], P .. 'ro:' .. ARGV[4]
-- From "" is the server (the server API): every member, no ack.
if from ~= '' and not redis.call('ZSCORE', ok, from) then return fail('NOTINROOM') end
local d, x = 0, 0
for _, o in ipairs(redis.call('ZRANGE', ok, 0, -1)) do
  if o ~= from then
    if append(o, ARGV[5]) then d = d + 1 else x = x + 1 end
  end
end
if ARGV[6] == '1' and from ~= '' then
  local b = ARGV[7] .. '"delivered":' .. d
  if x > 0 then b = b .. ',"dropped":' .. x end
  append(from, b .. '}')
end
return {d, x}
`)

// ARGV: 3 id, 4 body.
var pushScript = script(`
local s = append(ARGV[3], ARGV[4])
if s == nil then return fail('UNKNOWN') end
if s == false then return fail('QUEUEFULL') end
return s
`)

// ARGV: 3 id, 4 name.
var claimScript = script(`
local id, name = ARGV[3], ARGV[4]
local sk = skey(id)
local old = redis.call('HGET', sk, 'name')
if not old then return fail('UNKNOWN') end
local cur = redis.call('GET', P .. 'n:' .. name)
if cur and cur ~= id and redis.call('EXISTS', skey(cur)) == 1 then return fail('NAMETAKEN') end
if old ~= '' and old ~= name and redis.call('GET', P .. 'n:' .. old) == id then redis.call('DEL', P .. 'n:' .. old) end
redis.call('SET', P .. 'n:' .. name, id)
redis.call('HSET', sk, 'name', name)
return 1
`)

// Returns {name, members, max, …}.
var roomsScript = script(`
local out = {}
for _, r in ipairs(redis.call('SMEMBERS', P .. 'rooms')) do
  out[#out + 1] = r
  out[#out + 1] = redis.call('ZCARD', P .. 'ro:' .. r)
  out[#out + 1] = tonumber(redis.call('HGET', P .. 'rm:' .. r, 'max')) or 0
end
return out
`)

// ARGV: 3 room. Returns {peer, user, node, joined ms, …} in join order.
var membersScript = script(`
local rk, out = P .. 'rm:' .. ARGV[3], {}
for _, id in ipairs(redis.call('ZRANGE', P .. 'ro:' .. ARGV[3], 0, -1)) do
  local f = redis.call('HMGET', skey(id), 'user', 'node')
  out[#out + 1] = id
  out[#out + 1] = f[1] or ''
  out[#out + 1] = f[2] or ''
  out[#out + 1] = redis.call('HGET', rk, 't|' .. id) or '0'
end
return out
`)

// ARGV: 3 user.
var sessionsOfScript = script(`return redis.call('SMEMBERS', P .. 'u:' .. ARGV[3])`)

// Returns {node, count, …}; held sessions under "".
var countsScript = script(`
local out = {}
for _, n in ipairs(redis.call('ZRANGE', P .. 'nodes', 0, -1)) do
  out[#out + 1] = n
  out[#out + 1] = redis.call('SCARD', P .. 'ns:' .. n)
end
out[#out + 1] = ''
out[#out + 1] = redis.call('ZCARD', P .. 'held')
return out
`)

// beat refreshes this node's entry. ARGV: 3 node timeout ms. Returns {1
// when the entry was there (0: this node was taken for dead, or Redis lost
// its data), Redis's time in ms (the node's estimate of Redis's clock, for
// deadlines), the stall it found (unstall)}. It runs without a deadline: a
// beat that waited in a slow Redis still shows the node alive when it runs.
var beatScript = script(`
local stall = unstall(now_ms(), tonumber(ARGV[3]))
local was = redis.call('ZSCORE', P .. 'nodes', SELF)
local now = now_ms()
redis.call('ZADD', P .. 'nodes', now, SELF)
return {was and 1 or 0, now, stall}
`)

// ARGV: 3 node timeout ms, 4 batch. Turns the sessions of nodes silent for
// the timeout (not counting a stall of Redis's, unstall) into held ones,
// then removes up to a batch of held sessions whose grace ended. The
// calling node is never among the dead: it is running this. Returns
// {nodes taken over, sessions removed, the stall it found}.
var reapScript = script(`
local now = now_ms()
local stall = unstall(now, tonumber(ARGV[3]))
local dead = redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', now - tonumber(ARGV[3]))
local n = 0
for _, node in ipairs(dead) do
  if node ~= SELF then takeover(node, now) n = n + 1 end
end
local ids = redis.call('ZRANGEBYSCORE', P .. 'held', '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  if redis.call('EXISTS', skey(id)) == 1 then remove(id) else redis.call('ZREM', P .. 'held', id) end
end
return {n, #ids, stall}
`)

// retire is Close: this node's sessions are held at once, as after its
// death, without waiting for the node timeout.
var retireScript = script(`return takeover(SELF, now_ms())`)

// ARGV: 3… session ids this node believes it holds. Returns those it does
// not hold (any more).
var notMineScript = script(`
local lost, moved, kept = {}, {}, 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local sk = skey(id)
  local f = redis.call('HMGET', sk, 'node', 'held', 'seq')
  if not f[3] then
    lost[#lost + 1] = id
  elseif f[1] == SELF then
    kept = kept + 1
  elseif f[2] == '1' and f[1] == '' then
    -- Held since the others took this node for dead, and not resumed
    -- anywhere: its connection is still here, so it is this node's again.
    redis.call('HSET', sk, 'node', SELF, 'held', '0')
    redis.call('ZREM', P .. 'held', id)
    redis.call('SADD', P .. 'ns:' .. SELF, id)
    kept = kept + 1
  else
    moved[#moved + 1] = id
  end
end
return {lost, moved, kept}
`)
