package kv_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
)

func TestLifetime(t *testing.T) {
	l, err := kv.NewLifetime(context.Background(), time.Hour, "testkv")
	require.NoError(t, err)
	require.NoError(t, l.Alive("get"))
	l.Done = true
	assert.ErrorIs(t, l.Alive("get"), kv.ErrTxnDone)
	assert.EqualError(t, l.Live("set"), "testkv: set: "+kv.ErrTxnDone.Error())

	// The store's timeout: ErrTimeout naming it, not the context's.
	l, err = kv.NewLifetime(context.Background(), time.Millisecond, "testkv")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return l.Alive("get") != nil }, time.Second, time.Millisecond)
	err = l.Alive("get")
	assert.ErrorIs(t, err, kv.ErrTimeout)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "transaction older than 1ms")
	assert.NoError(t, l.Live("set"), "writes skip the clock")

	// An earlier context deadline: ErrTimeout and DeadlineExceeded.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	l, err = kv.NewLifetime(ctx, time.Hour, "testkv")
	if err == nil {
		<-ctx.Done()
		err = l.Alive("get")
	}
	assert.ErrorIs(t, err, kv.ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	// A cancelled context fails at once, without ErrTimeout.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	_, err = kv.NewLifetime(ctx, time.Hour, "testkv")
	assert.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, kv.ErrTimeout)
	assert.ErrorContains(t, err, "testkv: begin")
}

func TestGate(t *testing.T) {
	w := kv.NewGate("testkv: /db")
	l, err := kv.NewLifetime(context.Background(), time.Hour, "testkv")
	require.NoError(t, err)
	require.NoError(t, w.Acquire(&l))

	// Held: a second writer gives up at its deadline...
	short, err := kv.NewLifetime(context.Background(), 20*time.Millisecond, "testkv")
	require.NoError(t, err)
	err = w.Acquire(&short)
	assert.ErrorIs(t, err, kv.ErrTimeout)
	assert.ErrorContains(t, err, "wait for writer")

	// ...or when its context ends...
	ctx, cancel := context.WithCancel(context.Background())
	cl, err := kv.NewLifetime(ctx, time.Hour, "testkv")
	require.NoError(t, err)
	time.AfterFunc(10*time.Millisecond, cancel)
	assert.ErrorIs(t, w.Acquire(&cl), context.Canceled)

	// ...and gets it once it is released.
	got := make(chan error, 1)
	go func() { got <- w.Acquire(&l) }()
	w.Release()
	require.NoError(t, <-got)

	// Close wakes a waiter with ErrClosed.
	go func() { got <- w.Acquire(&l) }()
	w.Close()
	err = <-got
	assert.ErrorIs(t, err, kv.ErrClosed)
	assert.EqualError(t, err, "testkv: /db: wait for writer: "+kv.ErrClosed.Error())

	// Close waited for the transaction that entered: it returns after Exit,
	// and the gate is then shut.
	closed := make(chan error, 1)
	w2 := kv.NewGate("testkv: /db2")
	require.NoError(t, w2.Enter())
	go func() { closed <- w2.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned with a transaction running")
	case <-time.After(20 * time.Millisecond):
	}
	w2.Exit()
	require.NoError(t, <-closed)
	assert.ErrorIs(t, w2.Enter(), kv.ErrClosed)
	assert.ErrorIs(t, w2.Close(), kv.ErrClosed)
}
