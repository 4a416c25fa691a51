// Package bustest starts a real codi2 bus for tests: the production embedded
// NATS server with JetStream on a random port in a temporary directory.
package bustest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// Run starts a bus on 127.0.0.1 with a random port and a data directory in
// t.TempDir(), and closes it when the test ends. cfg may set any field; Listen
// and DataDir are filled in when empty.
func Run(t testing.TB, cfg ...bus.Config) *bus.Bus {
	t.Helper()
	var c bus.Config
	if len(cfg) > 0 {
		c = cfg[0]
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:-1"
	}
	if c.DataDir == "" && c.URL == "" {
		c.DataDir = t.TempDir()
	}
	b, err := bus.Start(context.Background(), c, Logger(t))
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b
}

// Connect opens a TCP client connection to b, closed when the test ends.
func Connect(t testing.TB, b *bus.Bus, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(b.ClientURL(), opts...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// Logger returns a logger that writes through t.Log at warn level and above,
// so that a failing test shows what the server said.
func Logger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

// Squat holds a stream's only consumer place, so that a consumer of that
// stream that was deleted cannot be created again until Release. Make one
// with SquatConsumer.
type Squat struct {
	t            testing.TB
	js           jetstream.JetStream
	stream, name string
	refused      atomic.Int32
}

// SquatConsumer deletes consumer name from stream while a consumer named
// "squatter" holds the stream's only consumer place (MaxConsumers 1): for
// tests of a service that must recreate its consumer. It counts, from
// JetStream's API audit advisories, the create requests for name that the
// server refuses.
func SquatConsumer(t testing.TB, js jetstream.JetStream, stream, name string) *Squat {
	t.Helper()
	ctx := context.Background()
	sq := &Squat{t: t, js: js, stream: stream, name: name}
	sub, err := js.Conn().Subscribe("$JS.EVENT.ADVISORY.API", func(m *nats.Msg) {
		var a struct {
			Subject  string `json:"subject"`
			Response string `json:"response"`
		}
		if json.Unmarshal(m.Data, &a) == nil && strings.HasPrefix(a.Subject, "$JS.API.CONSUMER.CREATE.") &&
			subjects.Token(a.Subject, 4) == stream && subjects.Token(a.Subject, 5) == name &&
			strings.Contains(a.Response, `"error"`) {
			sq.refused.Add(1)
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, js.Conn().Flush())

	s, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	_, err = s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "squatter"})
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxConsumers = 1
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	require.NoError(t, js.DeleteConsumer(ctx, stream, name))
	return sq
}

// WaitRefused waits until the server has refused n requests to create the
// consumer again.
func (sq *Squat) WaitRefused(n int) {
	sq.t.Helper()
	require.Eventually(sq.t, func() bool { return int(sq.refused.Load()) >= n }, 20*time.Second, 5*time.Millisecond,
		"%d of %d create requests for %s refused", sq.refused.Load(), n, sq.name)
}

// Release deletes the squatter: the consumer can be created again.
func (sq *Squat) Release() {
	sq.t.Helper()
	require.NoError(sq.t, sq.js.DeleteConsumer(context.Background(), sq.stream, "squatter"))
}

// SelfSigned writes a certificate and key for 127.0.0.1 into t.TempDir()
// and returns their files and a pool that trusts the certificate: a TLS
// listener for tests (bus.Config.TLSCert, TLSKey).
func SelfSigned(t testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "codi2 test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// Watermark follows a service's committed watermark ({"stream_seq": N} on
// subjects.StateCommitted or subjects.AuditCommitted), for a test or
// benchmark that waits for its own writes. Safe for concurrent use.
type Watermark struct {
	mu    sync.Mutex
	seq   uint64
	count int
	ch    chan struct{} // closed and replaced when seq grows
}

// WatchWatermark subscribes to subject on nc (flushed, so no later
// watermark is missed) until the test ends.
func WatchWatermark(t testing.TB, nc *nats.Conn, subject string) *Watermark {
	t.Helper()
	w := &Watermark{ch: make(chan struct{})}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		var v struct {
			StreamSeq uint64 `json:"stream_seq"`
		}
		if json.Unmarshal(m.Data, &v) != nil {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.count++
		if v.StreamSeq > w.seq {
			w.seq = v.StreamSeq
			close(w.ch)
			w.ch = make(chan struct{})
		}
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

// Count is how many watermarks arrived: one per committed batch.
func (w *Watermark) Count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.count
}

// Wait blocks until the watermark reaches seq, or fails after timeout.
func (w *Watermark) Wait(seq uint64, timeout time.Duration) error {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		w.mu.Lock()
		cur, ch := w.seq, w.ch
		w.mu.Unlock()
		if cur >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-tm.C:
			return fmt.Errorf("watermark %d did not reach %d in %v", cur, seq, timeout)
		}
	}
}
