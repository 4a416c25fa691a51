package pebblekv_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/pebblekv"
)

// crashEnv names the database directory when the test binary runs as the
// crash child; unset, TestStore_Update_CrashChild does nothing.
const crashEnv = "CODI2_PEBBLEKV_CRASH_DB"

const (
	crashBatchKeys  = 100 // keys per committed batch, plus the counter
	crashValueBytes = 100
)

var crashCounterKey = kv.Tuple{"counter"}.Pack()

func crashValue(batch int64) []byte {
	return bytes.Repeat([]byte{byte(batch)}, crashValueBytes)
}

// TestStore_Update_CrashChild is the child process of
// TestStore_Update_SurvivesKill: it commits batches until it is killed,
// odd ones with Update, even ones with UpdateAsync and its durable,
// printing each batch number once the commit is durable.
func TestStore_Update_CrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		return
	}
	s, err := pebblekv.Open(path, pebblekv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
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
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
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
		if batch%2 == 1 {
			err = s.Update(ctx, fn)
		} else {
			var durable func() error
			if durable, err = s.UpdateAsync(ctx, fn); err == nil {
				err = durable()
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(batch)
	}
}

// TestStore_Update_SurvivesKill kills a child process that commits batches
// of keys with SIGKILL at a random point, reopens the store and checks that
// every batch the child reported is there in full, no batch is partial and
// the counter written with each batch agrees. Several rounds run on the
// same file, each child continuing where the last one died.
func TestStore_Update_SurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "crash")
	const rounds = 20
	var reported int64
	for round := range rounds {
		killAfter := 1 + rand.IntN(25)
		reported = runCrashChild(t, path, killAfter)
		counter := verifyCrashFile(t, path)
		// A batch can commit after its last print and before the kill.
		assert.GreaterOrEqual(t, counter, reported, "round %d: a reported batch was lost", round)
		assert.LessOrEqual(t, counter, reported+1, "round %d: more than one unreported commit", round)
		t.Logf("round %d: killed after %d reports; %d batches reported, %d on disk", round, killAfter, reported, counter)
	}
}

// runCrashChild starts the child on path, kills it after it reported
// killAfter commits and returns the last batch number it reported.
func runCrashChild(t *testing.T, path string, killAfter int) int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStore_Update_CrashChild$", "-test.count=1")
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

// verifyCrashFile checks the invariants of the crash test on the store in
// path and returns the counter.
func verifyCrashFile(t *testing.T, path string) int64 {
	t.Helper()
	s, err := pebblekv.Open(path, pebblekv.Options{})
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
