package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/latency"
)

// warmup is the number of untimed operations before each latency loop, so
// that connection setup, consumer creation and first allocations are not
// measured.
const warmup = 200

// stamp returns a payload of size bytes (at least 8) that starts with the
// current time in Unix nanoseconds.
func stamp(size int) []byte {
	b := make([]byte, max(size, 8))
	for i := 8; i < len(b); i++ {
		b[i] = 'x'
	}
	binary.BigEndian.PutUint64(b, uint64(time.Now().UnixNano()))
	return b
}

// sinceStamp returns how long ago a stamp was made.
func sinceStamp(data []byte) time.Duration {
	if len(data) < 8 {
		return 0
	}
	return time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(data)))
}

// agentPair connects the run's orchestrator and agent-1, each on a
// connection of its own with the given names.
func (r *runner) agentPair(name1, name2 string) (orchestrator, agent1 *bus.Agent, err error) {
	nc1, err := r.connect(name1)
	if err != nil {
		return nil, nil, err
	}
	nc2, err := r.connect(name2)
	if err != nil {
		return nil, nil, err
	}
	if orchestrator, err = bus.NewAgent(r.agentID("orchestrator"), nc1); err != nil {
		return nil, nil, err
	}
	agent1, err = bus.NewAgent(r.agentID("agent-1"), nc2)
	return orchestrator, agent1, err
}

// measureMessages times Config.Messages durable messages from one agent to
// another, one at a time: Agent.Send (a JetStream publish with a
// Nats-Msg-Id, answered by a PubAck) to an Agent.Subscribe inbox, from the
// send to the delivery to the receiver, over TCP like any agent.
func (r *runner) measureMessages(ctx context.Context) (Metric, error) {
	sender, receiver, err := r.agentPair("bench-msg-sender", "bench-msg-receiver")
	if err != nil {
		return Metric{}, err
	}
	to := receiver.ID()
	got := make(chan time.Duration, 1)
	in, err := receiver.Subscribe(func(m bus.Message) { got <- sinceStamp(m.Data) })
	if err != nil {
		return Metric{}, err
	}
	defer in.Unsubscribe()
	defer r.purgeMessages(to)

	n := r.cfg.Messages
	rec := latency.NewRecorder(n)
	var done atomic.Int64
	stop := r.p.watch("messages", n, func() int { return int(done.Load()) })
	defer stop()
	var start time.Time
	for i := -warmup; i < n; i++ {
		if i == 0 {
			start = time.Now()
		}
		octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		_, err := sender.Send(octx, to, "task.assign", stamp(r.cfg.PayloadBytes))
		if err == nil {
			select {
			case d := <-got:
				if i >= 0 {
					rec.Record(d)
					done.Add(1)
				}
			case <-octx.Done():
				err = fmt.Errorf("bench: message %d not delivered: %w", i, context.Cause(octx))
			}
		}
		cancel()
		if err != nil {
			return Metric{}, err
		}
	}
	elapsed := time.Since(start)
	stop()
	s := rec.Summary()
	m := newMetric(KeyMessageOneWay, "message one-way (codi.msg)", s, latency.Throughput(s.Count, elapsed))
	m.Note = "durable Agent.Send (PubAck'd) to a live Agent.Subscribe over TCP loopback, one message at a time; throughput is sequential"
	return m, nil
}

// measureRPC times Config.Messages live calls, one at a time: Agent.Call to
// an agent answering with Agent.Serve, request to reply.
func (r *runner) measureRPC(ctx context.Context) (Metric, error) {
	caller, callee, err := r.agentPair("bench-rpc-caller", "bench-rpc-server")
	if err != nil {
		return Metric{}, err
	}
	sub, err := callee.Serve(func(req bus.RPCRequest) ([]byte, error) { return req.Data, nil })
	if err != nil {
		return Metric{}, err
	}
	defer sub.Unsubscribe()

	n := r.cfg.Messages
	rec := latency.NewRecorder(n)
	var done atomic.Int64
	stop := r.p.watch("rpc calls", n, func() int { return int(done.Load()) })
	defer stop()
	payload := stamp(r.cfg.PayloadBytes)
	var start time.Time
	for i := -warmup; i < n; i++ {
		if i == 0 {
			start = time.Now()
		}
		octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		t0 := time.Now()
		_, err := caller.Call(octx, callee.ID(), "status.get", payload)
		d := time.Since(t0)
		cancel()
		if err != nil {
			return Metric{}, err
		}
		if i >= 0 {
			rec.Record(d)
			done.Add(1)
		}
	}
	elapsed := time.Since(start)
	stop()
	s := rec.Summary()
	m := newMetric(KeyRPCRoundTrip, "rpc round trip (codi.rpc)", s, latency.Throughput(s.Count, elapsed))
	m.Note = "Agent.Call to Agent.Serve over TCP loopback, one call at a time; the target is two messages' worth"
	return m, nil
}
