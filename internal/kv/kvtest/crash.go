package kvtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
)

// The kill -9 test every embedded backend runs (RunCrash): a child process
// (the backend's test binary running the test that calls CrashChild)
// commits batches until it is killed, and the parent checks the store.

// crashEnv names the store's path when the test binary runs as the crash
// child; unset, CrashChild does nothing.
const crashEnv = "CODI2_KVTEST_CRASH_STORE"

const (
	crashBatchKeys  = 100 // keys per committed batch, plus the counter
	crashValueBytes = 100
)

var crashCounterKey = kv.Tuple{"counter"}.Pack()

func crashValue(batch int64) []byte {
	return bytes.Repeat([]byte{byte(batch)}, crashValueBytes)
}

// CrashChild is the body of the crash child's test: when the test binary
// runs as RunCrash's child it opens the store with open and commits
// batches of keys until it is killed, odd ones with Update and, on a
// kv.AsyncStore, even ones with UpdateAsync and its durable, printing each
// batch number once its commit is durable. Otherwise it returns at once.
func CrashChild(open func(path string) (kv.Store, error)) {
	path := os.Getenv(crashEnv)
	if path == "" {
		return
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s, err := open(path)
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	var batch int64
	err = s.View(ctx, func(tx kv.ReadTxn) error {
		v, err := tx.Get(crashCounterKey)
		if err != nil {
			return err
		}
		tp, err := kv.Unpack(v)
		if err == nil {
			batch = tp[0].(int64)
		}
		return err
	})
	if err != nil && !errors.Is(err, kv.ErrNotFound) {
		fail(err)
	}
	as, async := s.(kv.AsyncStore)
	for {
		batch++
		fn := func(tx kv.Txn) error {
			for i := range crashBatchKeys {
				if err := tx.Set(kv.Tuple{"batch", batch, i}.Pack(), crashValue(batch)); err != nil {
					return err
				}
			}
			return tx.Set(crashCounterKey, kv.Tuple{batch}.Pack())
		}
		var err error
		if async && batch%2 == 0 {
			var durable func() error
			if durable, err = as.UpdateAsync(ctx, fn); err == nil {
				err = durable()
			}
		} else {
			err = s.Update(ctx, fn)
		}
		if err != nil {
			fail(err)
		}
		fmt.Println(batch)
	}
}

// RunCrash kills a child process that commits batches (the test named
// childTest, which calls CrashChild with the same open) with SIGKILL at a
// random point, reopens the store at path with open and checks that every
// batch the child reported is there in full, no batch is partial and the
// counter written with each batch agrees. Twenty rounds run on the same
// path, each child continuing where the last one died. Skipped in -short.
func RunCrash(t *testing.T, childTest, path string, open func(path string) (kv.Store, error)) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	const rounds = 20
	for round := range rounds {
		killAfter := 1 + rand.IntN(25)
		reported := runCrashChild(t, childTest, path, killAfter)
		counter := verifyCrashStore(t, path, open)
		// A batch can commit after its last print and before the kill.
		assert.GreaterOrEqual(t, counter, reported, "round %d: a reported batch was lost", round)
		assert.LessOrEqual(t, counter, reported+1, "round %d: more than one unreported commit", round)
		t.Logf("round %d: killed after %d reports; %d batches reported, %d on disk", round, killAfter, reported, counter)
	}
}

// runCrashChild starts the child on path, kills it after it reported
// killAfter commits and returns the last batch number it reported.
func runCrashChild(t *testing.T, childTest, path string, killAfter int) int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+childTest+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	var last int64
	lines := 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		n, err := strconv.ParseInt(sc.Text(), 10, 64)
		if err != nil {
			continue // test framework output
		}
		last = n
		if lines++; lines == killAfter {
			require.NoError(t, cmd.Process.Kill())
			break
		}
	}
	// Drain what the child printed before it died: those commits happened.
	for sc.Scan() {
		if n, err := strconv.ParseInt(sc.Text(), 10, 64); err == nil {
			last = n
		}
	}
	err = cmd.Wait()
	require.Error(t, err, "child exited by itself: %s", stderr.String())
	require.Positive(t, lines, "child reported nothing: %s", stderr.String())
	return last
}

// verifyCrashStore checks the invariants of the crash test on the store at
// path and returns the counter.
func verifyCrashStore(t *testing.T, path string, open func(path string) (kv.Store, error)) int64 {
	t.Helper()
	s, err := open(path)
	require.NoError(t, err)
	defer s.Close()

	var counter int64
	err = s.View(t.Context(), func(tx kv.ReadTxn) error {
		v, err := tx.Get(crashCounterKey)
		require.NoError(t, err)
		tp, err := kv.Unpack(v)
		require.NoError(t, err)
		counter = tp[0].(int64)

		begin, end := kv.Tuple{"batch"}.Range()
		kvs, err := tx.GetRange(begin, end, kv.RangeOptions{})
		require.NoError(t, err)
		perBatch := map[int64]int{}
		for _, p := range kvs {
			tp, err := kv.Unpack(p.Key)
			require.NoError(t, err)
			b := tp[1].(int64)
			perBatch[b]++
			assert.Equal(t, crashValue(b), p.Value, "value of %v", tp)
		}
		assert.Len(t, perBatch, int(counter), "batches on disk vs counter")
		for b := int64(1); b <= counter; b++ {
			assert.Equal(t, crashBatchKeys, perBatch[b], "keys of batch %d", b)
		}
		return nil
	})
	require.NoError(t, err)
	return counter
}
