// Package subscription runs Pub/Sub-style subscriptions on topics of an
// eventlog.Log (the embedded broker or any Kafka cluster): per-message
// acknowledgement, ack deadlines and redelivery with backoff, filters in
// Pub/Sub's syntax, ordering keys, dead-letter topics, exactly-once
// delivery, pull, streaming pull (server-sent events) and push (webhooks in
// CloudEvents binary mode), seek to a time or a snapshot, and stats. The
// HTTP API follows Google Pub/Sub's REST shapes (Manager.Routes).
//
// # Files
//
//	config.go    the subscription resource, validation, limits, backoff
//	filter.go    the filter language: lexer, parser, evaluation
//	sub.go       one subscription's runtime: windows, deadline heap, pull, ack, seek
//	manager.go   Manager: create/delete, recovery, checkpoints, retention, snapshots
//	journal.go   the state journal: record encoding and the group-commit writer
//	push.go      push delivery, HMAC signature, AIMD concurrency
//	pushconn.go  keep-alive HTTP/1.1 connections to plain-http push endpoints
//	http.go      the HTTP API and streaming pull
//	jsonenc.go   reflection-free encoding of pull responses
//	metrics.go   the Prometheus collector
//
// # State
//
// Per partition a subscription keeps a window: a cursor (every offset
// below is acknowledged) and one 16-byte entry per offset from the cursor
// to the read position (state, delivery attempts, due time). Delivered and
// waiting messages also sit in a min-heap of 16-byte (due, partition,
// offset) items, stale items skipped when popped (and dropped in bulk when
// they outnumber the window). Message contents are never kept for unacked
// messages: a redelivery reads the log again. After a restart or a seek
// the unacked messages of the window are read again by the fetchers, in
// offset order (a second read position per partition), except delivered
// ones still within their deadline and nacked ones waiting for their
// backoff, which stay in the heap (under ordering only those with a hold
// record, which also gives back the key each holds). Only
// records read ahead and not yet delivered (at most 8192 or 16 MiB per
// subscription) hold data. Under ordering, a map holds the message that
// owns each busy key and the offsets blocked behind it.
//
// # Journal (frozen format)
//
// All durable state goes to one internal topic (DefaultStateTopic, one
// partition, 7 days retention), in the order it happened. Record key: the
// subscription name ("" for manager records). Value: version byte (1), kind
// byte, then uvarint/zigzag-varint fields:
//
//	1 def        JSON definition, positions, incarnation      created
//	2 delete                                                   deleted
//	3 ack        partition, count, offsets (delta)             acked (durable before the answer)
//	4 state      partition, count, (offset delta, attempts<<1|out, due ms)
//	                                                           delivered (durable before hand-out),
//	                                                           nacked, deadline changed
//	5 positions  positions, incarnation                        seek
//	6 ckpt       incarnation, JSON definition, 5 counters, bases
//	7 runs       partition, first offset, runs of (n, attempts<<2|out<<1|acked, due)
//	8 snap       name, subscription, topic, created ms, positions
//	9 snapdel    name
//	10 begin                                                   a checkpoint starts
//	11 hold      partition, count, (offset delta, ordering key)
//	                                                           ordering: delivered with its state record
//	                                                           (and in ckpt, for messages out or due):
//	                                                           the key each message holds ("" none)
//
// positions = count, per partition: base, count, (first-prev, last-first)
// acked ranges. Every CheckpointInterval (5 s) with changes, and at least
// hourly, the manager writes begin, every snapshot and every subscription's
// ckpt+runs (and holds), then commits the begin offset as the offset of
// consumer group "<state topic>.checkpoint". Recovery replays from that offset: a ckpt
// resets its subscription, later records apply on top. A record that does
// not decode stops recovery with an error wrapping errCorrupt.
//
// Ack ids are "<incarnation hex>-<partition>-<offset>-<attempt>". The
// incarnation changes at each seek; it is durable, so ack ids and ack
// deadlines survive a restart.
//
// # Concurrency
//
// Lock order: Manager.mu, then sub.mu, then journal.mu. Journal records of
// one subscription are added under its sub.mu, so the journal's order is
// the order of the changes. Each subscription has a fetch goroutine per
// partition, and a push loop with its own HTTP requests when it pushes;
// Delete and Close stop them and wait.
package subscription
