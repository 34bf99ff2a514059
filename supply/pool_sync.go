package supply

// Pool reconciliation ("POOL_SYNC"): after either of two nodes restarts,
// they compare the end-to-end key pools they share and drop what is not
// usable at both ends (DESIGN.md, invariant 8). A node's out pool for a
// remote holds the keys it sourced, the remote's in pool the same keys; a
// restart loses what was in memory: in memory mode the pools themselves,
// in durable mode the relays whose COMPLETION had not arrived, the list
// of reservations, the assignments in flight. pool_rules.go says what is
// dropped; this file says how the two nodes agree on it; pool_peer.go
// runs it.
//
// # Who, and when
//
// Each node draws a random 64-bit boot ID at start and sends POOL_HELLO
// to every node its router reaches, with backoff (250 ms doubling to
// 4 s) until that node's HELLO shows it has heard this boot ID. A node
// answers a HELLO that tells it something new (a boot ID not heard
// before) or that shows the sender has not heard its own, so one HELLO
// each way ends the exchange. A node remembers the boot ID last heard
// from each node: a new one means that node restarted. The node with the
// lower ID of a pair coordinates: whenever it has not completed a round
// with the other's current boot ID, it runs one. A round that fails is
// retried with backoff (1 s doubling to 30 s).
//
// # A round
//
// Coordinator X, other node Y. X pauses supply with Y (pool_gate.go: relays to
// Y and enc_keys for SAEs of Y's wait, enc_keys at most
// api.etsi014.assign_timeout before it answers 503 saying why; no new
// reservations),
// waits until nothing it started towards Y is in flight (relays until
// their completion, assignments until their acknowledgement), and sends
// POOL_SYNC_REQ, once a second until answered. Y pauses and waits the
// same way, takes the inventory of its two pools shared with X and
// answers POOL_SYNC_READY with their sizes. X takes its own inventory
// and pulls Y's with POOL_INV_REQ, one chunk of 2,048 keys after the
// other, each asked again after a second without an answer. X applies
// the rules, drops its own share, and sends Y its share in POOL_DROP
// chunks, each repeated until POOL_DROP_ACK; Y applies each chunk once.
// The round is done at Y when it has applied every chunk, at X when
// every chunk is acknowledged; each then resumes supply. A step without
// progress for 5 s ends the round at X, 10 s without a message from X at
// Y, and both resume; waiting for what is in flight is bounded by
// km.completion_timeout + api.etsi014.assign_timeout + 2 s. A drop names
// the state the key had in the inventory and applies only if it still
// has it, so a repeated or late chunk never removes a key handed out
// since. dec_keys is not paused: it hands out keys assigned at this end,
// which the rules never drop at the other end (a key the other end still
// holds was never handed to a master; see pool_rules.go).
//
// A round holds both nodes' inventories of the pools the two share: 17
// bytes a key, at most the pools' size (pools.slots each); the
// coordinator refuses an inventory above maxSyncInventory keys a pool.
//
// # Messages
//
// POOL_HELLO, POOL_SYNC_REQ, POOL_SYNC_READY, POOL_INV_REQ, POOL_INV,
// POOL_DROP and POOL_DROP_ACK are routed messages (relay.Engine.SendRouted)
// of package dataplane/frame, specified byte for byte in docs/kmlink.md,
// section 10. A receiver drops, and logs, a message its parser refuses;
// the sender repeats what matters.

// maxSyncInventory bounds the keys of one pool a coordinator takes from
// the other node's inventory (2^24: a pool of 512 MiB of 32-byte keys).
const maxSyncInventory = 1 << 24
