package audit_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/subjects"
)

// crashPublisher publishes audit events one at a time, each with its own
// Nats-Msg-Id, and remembers which ones got a PubAck.
type crashPublisher struct {
	source string
	mu     sync.Mutex
	acked  map[string]uint64 // msg id -> PubAck stream seq
}

func (p *crashPublisher) run(ctx context.Context, js jetstream.JetStream, cycle int) {
	subj, _ := subjects.AuditLog(p.source, "op")
	for k := 0; ctx.Err() == nil; k++ {
		id := fmt.Sprintf("%s-%d-%d", p.source, cycle, k)
		data := fmt.Appendf(nil, `{"cycle":%d,"k":%d}`, cycle, k)
		if k%7 == 3 {
			data = append([]byte{0xff}, data...) // not JSON: kept as bytes
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ack, err := js.Publish(pctx, subj, data, jetstream.WithMsgID(id))
		cancel()
		if err != nil {
			return // the server is gone: this cycle is over for this publisher
		}
		p.mu.Lock()
		p.acked[id] = ack.Sequence
		p.mu.Unlock()
	}
}

// TestServe_Crash_ExactlyOnce kills the built binary with SIGKILL twice in
// the middle of a load of five concurrent publishers and restarts it on the
// same data directory. Afterwards every PubAck'd event is in the log exactly
// once, the log is as long as the stream (nothing stored is lost, nothing is
// doubled), seqs are dense, and the chain verifies, online and as an export.
func TestServe_Crash_ExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test builds and kills the binary")
	}
	srv := proctest.Start(t, proctest.Build(t), t.TempDir(), 0)

	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	pubs := make([]*crashPublisher, 5)
	for i := range pubs {
		pubs[i] = &crashPublisher{source: fmt.Sprintf("agent-%d", i), acked: map[string]uint64{}}
	}
	ackedTotal := func() int {
		n := 0
		for _, p := range pubs {
			p.mu.Lock()
			n += len(p.acked)
			p.mu.Unlock()
		}
		return n
	}
	loads := make([]func(context.Context, int), len(pubs))
	for i, p := range pubs {
		loads[i] = func(ctx context.Context, cycle int) { p.run(ctx, js, cycle) }
	}
	srv = srv.KillUnderLoad(t, 2, 3000, ackedTotal, loads...)

	// The watermark reaches the end of the stream, hence every PubAck.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	c, err := audit.NewClient(nc)
	require.NoError(t, err)
	defer c.Close()
	w, err := c.WaitCommitted(ctx, info.State.LastSeq)
	require.NoError(t, err)

	// Every record once, every PubAck'd event among them.
	var export bytes.Buffer
	n, err := audit.Export(ctx, nc, &export, audit.Query{Limit: audit.MaxQueryLimit})
	require.NoError(t, err)
	assert.Equal(t, info.State.Msgs, uint64(n), "one record per stored event")
	assert.Equal(t, uint64(n), w.Seq)
	seen := map[string]int{}
	var seq uint64
	for line := range bytes.Lines(export.Bytes()) {
		r, err := audit.ParseRecord(bytes.TrimSuffix(line, []byte("\n")))
		require.NoError(t, err)
		seq++
		require.Equal(t, seq, r.Seq, "seqs are dense")
		seen[r.MsgID]++
	}
	for _, p := range pubs {
		for id := range p.acked {
			assert.Equal(t, 1, seen[id], "%s: PubAck'd event in the log once", id)
		}
	}
	for id, k := range seen {
		assert.Equal(t, 1, k, "%s appended %d times", id, k)
	}

	res, err := c.Verify(ctx, audit.VerifyRequest{})
	require.NoError(t, err)
	assert.True(t, res.OK, "%+v", res)
	assert.Equal(t, uint64(n), res.Count)
	offline, err := audit.VerifyExport(&export)
	require.NoError(t, err)
	assert.True(t, offline.OK, "%+v", offline)
	assert.Equal(t, res.Head, offline.Head)

	assert.Equal(t, 0, srv.Stop(20*time.Second), srv.Logs())
}
