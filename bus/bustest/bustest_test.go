package bustest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRun(t *testing.T) {
	b := bustest.Run(t)
	nc := bustest.Connect(t, b)
	assert.True(t, nc.IsConnected())
	assert.NotEqual(t, bus.DefaultListen, nc.ConnectedAddr(), "a random port, never the default")
	_, err := b.JetStream().Stream(context.Background(), bus.StreamAudit)
	require.NoError(t, err)

	small := bustest.Run(t, bus.Config{MaxPayload: 1024})
	assert.Equal(t, int64(1024), bustest.Connect(t, small).MaxPayload())
}

func TestSquatConsumer(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	js := b.JetStream()
	_, err := js.CreateOrUpdateConsumer(ctx, bus.StreamMsg, jetstream.ConsumerConfig{Durable: "mine"})
	require.NoError(t, err)

	squat := bustest.SquatConsumer(t, js, bus.StreamMsg, "mine")
	_, err = js.Consumer(ctx, bus.StreamMsg, "mine")
	require.ErrorIs(t, err, jetstream.ErrConsumerNotFound)
	_, err = js.CreateOrUpdateConsumer(ctx, bus.StreamMsg, jetstream.ConsumerConfig{Durable: "mine"})
	require.ErrorIs(t, err, jetstream.ErrMaximumConsumersLimit)

	squat.WaitRefused(1)
	squat.Release()
	_, err = js.CreateOrUpdateConsumer(ctx, bus.StreamMsg, jetstream.ConsumerConfig{Durable: "mine"})
	require.NoError(t, err)
}

func TestSelfSigned(t *testing.T) {
	certFile, keyFile, pool := bustest.SelfSigned(t)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool})
	require.NoError(t, err, "the pool trusts the certificate")
	assert.Equal(t, "127.0.0.1", cert.IPAddresses[0].String())
}

func TestWatchWatermark(t *testing.T) {
	b := bustest.Run(t)
	nc := bustest.Connect(t, b)
	w := bustest.WatchWatermark(t, nc, subjects.StateCommitted)
	err := w.Wait(1, 10*time.Millisecond)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "watermark 0 did not reach 1")
	for _, body := range []string{`{"stream_seq":2}`, `not json`, `{"stream_seq":1}`, `{"stream_seq":5}`} {
		require.NoError(t, nc.Publish(subjects.StateCommitted, []byte(body)))
	}
	require.NoError(t, w.Wait(5, 5*time.Second))
	assert.Equal(t, 3, w.Count(), "three watermarks, one of them older")
	require.NoError(t, w.Wait(4, time.Millisecond), "already past")
}
