package bus_test

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/latency"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/stretchr/testify/require"
)

// The benchmarks below compare codi2's agent client with raw nats.go on the
// same embedded server, in-process and over TCP loopback, and report the
// median and 99th percentile of per-message latency:
//
//	go test -run XXX -bench . -benchtime 20000x ./bus
//
// measure runs op b.N times, one at a time, and reports the median and 99th
// percentile of the latencies it returns.
func measure(b *testing.B, op func() (time.Duration, error)) {
	rec := latency.NewRecorder(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		d, err := op()
		if err != nil {
			b.Fatal(err)
		}
		rec.Record(d)
	}
	s := rec.Summary()
	b.ReportMetric(float64(s.P50.Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(s.P99.Nanoseconds()), "p99-ns")
}

type transport struct {
	name    string
	connect func(b *testing.B) *nats.Conn
}

func transports(bs *bus.Bus) []transport {
	return []transport{
		{"inproc", func(b *testing.B) *nats.Conn {
			nc, err := bs.Connect("bench")
			require.NoError(b, err)
			b.Cleanup(nc.Close)
			return nc
		}},
		{"tcp", func(b *testing.B) *nats.Conn { return bustest.Connect(b, bs) }},
	}
}

func stamp() []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 64), uint64(time.Now().UnixNano()))
}

func sinceStamp(data []byte) time.Duration {
	return time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(data)))
}

// BenchmarkOneWay measures publish-to-delivery latency of one message at a
// time: raw core NATS, raw JetStream publish, and codi2's Agent.Send to an
// Agent.Subscribe inbox (a durable message seen by a live subscriber).
func BenchmarkOneWay(b *testing.B) {
	bs := bustest.Run(b)
	ctx := context.Background()
	for _, tr := range transports(bs) {
		b.Run("raw-core/"+tr.name, func(b *testing.B) {
			pub, sub := tr.connect(b), tr.connect(b)
			got := make(chan time.Duration, 1)
			s, err := sub.Subscribe("bench.oneway", func(m *nats.Msg) { got <- sinceStamp(m.Data) })
			require.NoError(b, err)
			defer s.Unsubscribe()
			require.NoError(b, sub.Flush())
			measure(b, func() (time.Duration, error) {
				if err := pub.Publish("bench.oneway", stamp()); err != nil {
					return 0, err
				}
				return <-got, nil
			})
		})
		for _, withID := range []bool{false, true} {
			name := "raw-jetstream/"
			if withID {
				// What the contract asks of any sender: a Nats-Msg-Id.
				name = "raw-jetstream-msgid/"
			}
			b.Run(name+tr.name, func(b *testing.B) {
				pub, sub := tr.connect(b), tr.connect(b)
				js, err := jetstream.New(pub)
				require.NoError(b, err)
				got := make(chan time.Duration, 1)
				s, err := sub.Subscribe("codi.msg.agent-2.>", func(m *nats.Msg) { got <- sinceStamp(m.Data) })
				require.NoError(b, err)
				defer s.Unsubscribe()
				require.NoError(b, sub.Flush())
				measure(b, func() (time.Duration, error) {
					var opts []jetstream.PublishOpt
					if withID {
						opts = append(opts, jetstream.WithMsgID(nuid.Next()))
					}
					if _, err := js.Publish(ctx, "codi.msg.agent-2.agent-1.bench", stamp(), opts...); err != nil {
						return 0, err
					}
					return <-got, nil
				})
			})
		}
		b.Run("codi2/"+tr.name, func(b *testing.B) {
			sender, err := bus.NewAgent("agent-1", tr.connect(b))
			require.NoError(b, err)
			rcv, err := bus.NewAgent("agent-2", tr.connect(b))
			require.NoError(b, err)
			got := make(chan time.Duration, 1)
			in, err := rcv.Subscribe(func(m bus.Message) { got <- sinceStamp(m.Data) })
			require.NoError(b, err)
			defer in.Unsubscribe()
			measure(b, func() (time.Duration, error) {
				if _, err := sender.Send(ctx, "agent-2", "bench", stamp()); err != nil {
					return 0, err
				}
				return <-got, nil
			})
		})
	}
}

// BenchmarkSend measures a durable send until its PubAck: raw JetStream
// publish against codi2's Agent.Send (validation, Nats-Msg-Id, headers).
func BenchmarkSend(b *testing.B) {
	bs := bustest.Run(b)
	ctx := context.Background()
	for _, tr := range transports(bs) {
		b.Run("raw-jetstream/"+tr.name, func(b *testing.B) {
			js, err := jetstream.New(tr.connect(b))
			require.NoError(b, err)
			measure(b, func() (time.Duration, error) {
				start := time.Now()
				_, err := js.Publish(ctx, "codi.msg.agent-2.agent-1.bench", []byte("x"))
				return time.Since(start), err
			})
		})
		b.Run("codi2/"+tr.name, func(b *testing.B) {
			a, err := bus.NewAgent("agent-1", tr.connect(b))
			require.NoError(b, err)
			measure(b, func() (time.Duration, error) {
				start := time.Now()
				_, err := a.Send(ctx, "agent-2", "bench", []byte("x"))
				return time.Since(start), err
			})
		})
	}
}

// BenchmarkRPC measures a live request/reply round trip: raw nc.Request to
// a raw responder against codi2's Agent.Call to Agent.Serve.
func BenchmarkRPC(b *testing.B) {
	bs := bustest.Run(b)
	ctx := context.Background()
	for _, tr := range transports(bs) {
		b.Run("raw/"+tr.name, func(b *testing.B) {
			caller, server := tr.connect(b), tr.connect(b)
			s, err := server.Subscribe("codi.rpc.agent-2.>", func(m *nats.Msg) { _ = m.Respond(m.Data) })
			require.NoError(b, err)
			defer s.Unsubscribe()
			require.NoError(b, server.Flush())
			measure(b, func() (time.Duration, error) {
				start := time.Now()
				_, err := caller.RequestWithContext(ctx, "codi.rpc.agent-2.agent-1.ping", []byte("x"))
				return time.Since(start), err
			})
		})
		b.Run("codi2/"+tr.name, func(b *testing.B) {
			caller, err := bus.NewAgent("agent-1", tr.connect(b))
			require.NoError(b, err)
			server, err := bus.NewAgent("agent-2", tr.connect(b))
			require.NoError(b, err)
			s, err := server.Serve(func(r bus.RPCRequest) ([]byte, error) { return r.Data, nil })
			require.NoError(b, err)
			defer s.Unsubscribe()
			measure(b, func() (time.Duration, error) {
				start := time.Now()
				_, err := caller.Call(ctx, "agent-2", "ping", []byte("x"))
				return time.Since(start), err
			})
		})
	}
}

// BenchmarkCatchUp measures how fast an agent catches up on b.N queued
// messages over TCP: codi2's Receive (one message at a time, each ack
// confirmed, MaxAckPending 1) against a raw JetStream consumer fetching
// batches of 100 with plain acks, which is what Receive gives up for its
// ordering and no-redelivery promises. Reported as messages per second.
func BenchmarkCatchUp(b *testing.B) {
	ctx := context.Background()
	fill := func(b *testing.B, bs *bus.Bus, to string) {
		js, err := jetstream.New(bustest.Connect(b, bs))
		require.NoError(b, err)
		subj := "codi.msg." + to + ".orchestrator.task"
		for range b.N {
			if _, err := js.PublishAsync(subj, []byte("task")); err != nil {
				b.Fatal(err)
			}
		}
		<-js.PublishAsyncComplete()
	}
	b.Run("codi2-receive", func(b *testing.B) {
		bs := bustest.Run(b)
		fill(b, bs, "agent-1")
		a, err := bus.NewAgent("agent-1", bustest.Connect(b, bs))
		require.NoError(b, err)
		n := 0
		b.ResetTimer()
		start := time.Now()
		err = a.Receive(ctx, bus.ReceiveConfig{UntilIdle: true}, func(context.Context, bus.Message) error { n++; return nil })
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
		require.NoError(b, err)
		require.Equal(b, b.N, n)
	})
	b.Run("raw-fetch-100", func(b *testing.B) {
		bs := bustest.Run(b)
		fill(b, bs, "agent-1")
		js, err := jetstream.New(bustest.Connect(b, bs))
		require.NoError(b, err)
		cons, err := js.CreateConsumer(ctx, bus.StreamMsg, jetstream.ConsumerConfig{
			Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "codi.msg.agent-1.>"})
		require.NoError(b, err)
		b.ResetTimer()
		start := time.Now()
		for n := 0; n < b.N; {
			batch, err := cons.Fetch(100, jetstream.FetchMaxWait(time.Second))
			require.NoError(b, err)
			for m := range batch.Messages() {
				_ = m.Ack()
				n++
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})
}
