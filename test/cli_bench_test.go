package test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/latency"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/state"
)

// BenchmarkCLI_Claim measures, in one run against one codi2 serve, what an
// agent in a shell pays for a claim: `codi2 claim` from process start to
// exit, beside the stock `nats req` reading one record (the same process
// start and connect, no JetStream write), and the in-process client's
// claim (the command's own cost). Goal (issue 14): codi2 claim within 1.5x
// of nats req. Reports p50 and p99 in microseconds.
func BenchmarkCLI_Claim(b *testing.B) {
	if testing.Short() {
		b.Skip("builds and runs codi2")
	}
	natsBin, err := exec.LookPath("nats")
	if err != nil {
		b.Skip("the nats CLI is not on PATH (go install github.com/nats-io/natscli/nats@v0.5.0)")
	}
	bin := proctest.Build(b)
	srv := proctest.Start(b, bin, b.TempDir(), 0)
	nc := connect(b, srv.URL, "bench")
	c, err := state.NewClient(nc, "bench")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Claim(context.Background(), "task", "read-me", time.Hour, nil); err != nil {
		b.Fatal(err)
	}
	report := func(b *testing.B, rec *latency.Recorder) {
		s := rec.Summary()
		b.ReportMetric(float64(s.P50.Microseconds()), "p50-us")
		b.ReportMetric(float64(s.P99.Microseconds()), "p99-us")
	}
	b.Run("codi2-claim", func(b *testing.B) {
		rec := latency.NewRecorder(b.N)
		for i := range b.N {
			cmd := exec.Command(bin, "claim", "task", fmt.Sprintf("cli-%d-%d", b.N, i), "--bind=false")
			cmd.Env = append(cmd.Environ(), "CODI2_NATS_URL="+srv.URL, "CODI2_AGENT=agent-2")
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
			rec.Record(time.Since(start))
		}
		report(b, rec)
	})
	b.Run("nats-req-get", func(b *testing.B) {
		rec := latency.NewRecorder(b.N)
		for range b.N {
			cmd := exec.Command(natsBin, "--server", srv.URL, "req", "codi.state.get.task.read-me", "")
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
			rec.Record(time.Since(start))
		}
		report(b, rec)
	})
	b.Run("client-claim", func(b *testing.B) {
		rec := latency.NewRecorder(b.N)
		for i := range b.N {
			start := time.Now()
			if _, err := c.Claim(context.Background(), "task", fmt.Sprintf("go-%d-%d", b.N, i), time.Hour, nil); err != nil {
				b.Fatal(err)
			}
			rec.Record(time.Since(start))
		}
		report(b, rec)
	})
}
