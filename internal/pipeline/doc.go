// Package pipeline is the consume -> transact -> ack lifecycle that the
// state and audit services share: one durable pull consumer on one
// stream, whose messages a single writer commits to a store in batches,
// in stream order, acking each batch once it is committed.
//
// # Basics
//
// A service builds a Pipeline with New, giving it a Handler: the
// service's own watermark (the last stream sequence committed to its
// store), how it commits a batch in its transactions, and how it records
// what the stream lost. Open finds the stream, moves the watermark back
// when the stream handed its sequence numbers out again (bus.ResumeAfter),
// creates or updates the consumer so that it delivers right after the
// watermark, and starts consuming; the service then says it is ready. Run
// gathers batches (up to Config.MaxBatch messages and Config.MaxBatchBytes
// bytes, waiting up to Config.MaxBatchWait for more), hands them to
// Handler.Commit, acks them, and runs the handler's own timed work
// (Handler.Wake, Handler.Tick) between batches. When its context ends, Run
// drains the consumer, commits and acks what was delivered, and returns.
//
// What the pipeline handles for every service:
//
//   - replays: a delivery at or below the watermark is acked and dropped;
//   - holes in the delivery (consumer) sequence and out-of-order
//     redeliveries: the batch ends before them and the consumer is made
//     again right after the watermark, so commands come again in order;
//   - a consumer deleted under the service, or whose heartbeats stopped:
//     the same;
//   - a stream deleted under the service: it is created again with the
//     configuration it had (bus.RecreateStream), and Handler.Replace
//     records the sequences the old stream held past the watermark;
//   - a stream that lost its tail while idle (bus.LostTail): Handler.Lost
//     records it.
//
// Stream sequences missing between two contiguous deliveries (messages
// deleted or expired from the stream) reach Handler.Commit as a jump in
// Msg.Seq; the service records them as it sees fit.
//
// # Caveats
//
// Only one goroutine may call Open and Run, in that order, once. Handler
// methods are called on that goroutine only, so the handler is a single
// writer and needs no locks for its own state. The only goroutine the
// pipeline starts itself is nats.go's consume callback, which Run stops
// before it returns.
package pipeline
