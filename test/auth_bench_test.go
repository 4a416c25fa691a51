package test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/auth"
	"github.com/codi2/codi2/internal/latency"
	"github.com/codi2/codi2/internal/server"
	"github.com/codi2/codi2/state"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

// benchSide is one server (auth on or off) with two agents connected over
// TCP: agent-1 sends mail and state commands, agent-2 subscribes.
type benchSide struct {
	name     string
	sender   *bus.Agent
	state    *state.Client
	got      chan time.Duration
	msg, cmd *latency.Recorder
}

func startBenchSide(b *testing.B, withAuth bool) *benchSide {
	b.Helper()
	dir := b.TempDir()
	srv, err := server.Start(context.Background(), server.Config{DataDir: dir, NATSListen: "127.0.0.1:-1", Auth: withAuth}, bustest.Logger(b))
	require.NoError(b, err)
	b.Cleanup(func() { _ = srv.Stop() })
	dial := func(id string) *nats.Conn {
		var opts []nats.Option
		if withAuth {
			a, err := auth.Open(filepath.Join(dir, "auth"))
			require.NoError(b, err)
			creds, _, err := bus.Issue(a, id, auth.RoleAgent)
			require.NoError(b, err)
			file := filepath.Join(b.TempDir(), id+".creds")
			require.NoError(b, os.WriteFile(file, creds, 0o600))
			opts = append(opts, bus.Credentials(file))
		}
		return bustest.Connect(b, srv.Bus(), opts...)
	}
	s := &benchSide{name: "off", got: make(chan time.Duration, 1), msg: latency.NewRecorder(b.N), cmd: latency.NewRecorder(b.N)}
	if withAuth {
		s.name = "on"
	}
	nc := dial("agent-1")
	s.sender, err = bus.NewAgent("agent-1", nc)
	require.NoError(b, err)
	s.state, err = state.NewClient(nc, "agent-1")
	require.NoError(b, err)
	rcv, err := bus.NewAgent("agent-2", dial("agent-2"))
	require.NoError(b, err)
	in, err := rcv.Subscribe(func(m bus.Message) {
		s.got <- time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(m.Data)))
	})
	require.NoError(b, err)
	b.Cleanup(func() { in.Unsubscribe(); <-in.Done() })
	return s
}

// round sends n messages and n state updates, one at a time, recording
// the one-way latency of each message (Send to Subscribe handler) and of
// each update (Apply: publish, commit, event).
func (s *benchSide) round(ctx context.Context, b *testing.B, n, offset int) {
	for i := range n {
		data := binary.BigEndian.AppendUint64(make([]byte, 0, 64), uint64(time.Now().UnixNano()))
		if _, err := s.sender.Send(ctx, "agent-2", "bench", data); err != nil {
			b.Fatal(err)
		}
		s.msg.Record(<-s.got)
		t0 := time.Now()
		if _, err := s.state.Apply(ctx, "task", fmt.Sprintf("T-%d", (offset+i)%100), state.Command{Op: state.OpMerge, Fields: map[string]any{"n": i}}); err != nil {
			b.Fatal(err)
		}
		s.cmd.Record(time.Since(t0))
	}
}

// BenchmarkAuth_OnOff measures message one-way latency and state update
// latency with auth off and on in the same run: two servers side by side,
// measured in alternating rounds so that machine load falls on both
// alike. b.N is the number of messages and updates per side:
//
//	go test -run XXX -bench BenchmarkAuth_OnOff -benchtime 5000x ./test
func BenchmarkAuth_OnOff(b *testing.B) {
	off, on := startBenchSide(b, false), startBenchSide(b, true)
	ctx := context.Background()
	const rounds = 10
	per := max(1, b.N/rounds)
	off.round(ctx, b, 50, 0) // warm up both
	on.round(ctx, b, 50, 0)
	off.msg, off.cmd, on.msg, on.cmd = latency.NewRecorder(b.N), latency.NewRecorder(b.N), latency.NewRecorder(b.N), latency.NewRecorder(b.N)
	b.ResetTimer()
	for r := range rounds {
		first, second := off, on
		if r%2 == 1 {
			first, second = on, off
		}
		first.round(ctx, b, per, r*per)
		second.round(ctx, b, per, r*per)
	}
	b.StopTimer()
	for _, s := range []*benchSide{off, on} {
		m, c := s.msg.Summary(), s.cmd.Summary()
		b.ReportMetric(float64(m.P50.Microseconds()), "msg-p50-us-auth-"+s.name)
		b.ReportMetric(float64(m.P99.Microseconds()), "msg-p99-us-auth-"+s.name)
		b.ReportMetric(float64(c.P50.Microseconds()), "state-p50-us-auth-"+s.name)
		b.ReportMetric(float64(c.P99.Microseconds()), "state-p99-us-auth-"+s.name)
		b.Logf("auth %-3s message one-way %v; state update %v", s.name, m, c)
	}
}
