// Package redisbus is signaling.Bus on Redis: the cluster bus. Every node
// of a cluster runs the same session code on a Bus of its own; they share
// sessions, rooms and message logs through one Redis (a single server or a
// Sentinel-managed primary), and each node receives the messages of the
// sessions it holds on a channel of its own.
//
// # Operations are scripts
//
// Every Bus method is one Lua script (EVALSHA, falling back to EVAL after
// a Redis restart emptied the script cache), so it is atomic across nodes:
// two nodes racing for a room's last seat run one after the other and
// exactly one wins. A script checks everything before it writes, and a
// refusal is an error reply ICEGATE_<CODE> that maps to a signaling error,
// so a refused operation changes nothing. Scripts read the time from Redis
// (TIME), so node clocks do not matter. Each runs within Options.OpTimeout
// (1.5 s); past it, or with Redis unreachable, the caller gets
// signaling.ErrUnavailable. A script also carries a deadline on Redis's
// clock, OpTimeout/3 before its caller gives up (estimated from the last
// heartbeat's answer): one that reaches a stalled Redis later refuses and
// writes nothing, so an operation the session code answered
// cluster-unavailable is not done behind its back (its ack or its message
// turning up after the error). Only a script that ran and whose answer was
// then held up for more than that margin, or whose connection broke, may
// have been done; none is retried, so none is done twice.
//
// # Keys (P is Options.Prefix, "icegate:" by default)
//
//	P s:<id>      hash: a session: node (""=held), held, written, user,
//	              tok and ptok (current and previous resume token), seq
//	              (last logged), q and k (Limits.Queue, Keep), grace (ms),
//	              name (/ws/simple login)
//	P l:<id>      stream: the session's log, entry id "<seq>-1", field b =
//	              body; MAXLEN Keep+Queue. Replay is XRANGE from after+1.
//	P r:<id>      zset: the session's rooms, by join counter
//	P t:<token>   string: resume token → session id (current and previous)
//	P n:<name>    string: claimed name → session id
//	P u:<user>    set: a user's sessions
//	P gone:<id>   string with a 10-minute TTL: a removed session (Send
//	              answers ErrPeerGone)
//	P rm:<room>   hash: max, and per member m|<id> (its Member JSON),
//	              l|<id> (its PeerLeft body), t|<id> (join time, ms)
//	P ro:<room>   zset: members by join counter (P joins, a counter)
//	P rooms       set: room names
//	P held        zset: held sessions by expiry (ms)
//	P nodes       zset: live nodes by last heartbeat (ms)
//	P ns:<node>   set: the sessions a node holds
//	P node:<node> the node's pub/sub channel
//
// All of a session's and room's keys are computed inside the scripts from
// the prefix; that needs one Redis (or Sentinel). Redis Cluster would need
// every key in one slot: a prefix with a hash tag ("{icegate}:") would do
// it, at the cost of one shard doing all the work, which is what a single
// Redis does anyway.
//
// # Delivery
//
// A script that logs a message for a session (the append function every
// script shares) also PUBLISHes "d<seq> <len(id)> <id><body>" on the
// holding node's channel; nothing reaches a node outside that path, the
// session's own replies included. Redis runs scripts one at a time and
// keeps publish order per channel, so a node receives each session's
// messages in seq order. Each node subscribes its channel on a dedicated
// connection; when that connection breaks it resubscribes with backoff
// and calls Node.Resync, since what was published meanwhile is lost (it
// is in the logs). Messages a Resume or Replay already returned are not
// delivered again: the bus remembers, per session it holds, the last seq
// the node has had. Kicks travel the same channel: "k<code> <len> <id>
// <reason>".
//
// # Held sessions, dead nodes, the reaper
//
// Hold marks a session held (node "", its written seq, an expiry in P held);
// a held session takes Limits.Queue messages beyond written, then
// ErrQueueFull. Every node beats every NodeTimeout/3 (P nodes) and, every
// ReapInterval (1 s), runs the reap script: the sessions of a node silent
// for NodeTimeout become held, each for its own Limits.Grace, and held
// sessions past their expiry are removed (leaving their rooms with
// peer-left to the others). The script is atomic, so each of that happens
// once however many nodes reap. A node that finds its own heartbeat entry
// gone (it was taken for dead, or Redis lost its data) reclaims the
// sessions still held for it (their connections stay), closes those that
// resumed elsewhere with 4000 and those Redis no longer has with 1012 (their
// clients start over), and resyncs. Close hands a node's sessions over at once, as a death
// would after NodeTimeout.
//
// # Client
//
// github.com/redis/rueidis (docs/dependencies.md says why): auto-pipelined
// commands from every goroutine over one connection, no client-side cache,
// no retries.
package redisbus
