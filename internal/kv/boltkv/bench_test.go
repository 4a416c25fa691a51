package boltkv_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/codi2/codi2/internal/latency"
)

// Each benchmark runs the same work through boltkv and through bbolt
// directly, on the same kind of file with the same options, so that the
// ratio of the two is boltkv's overhead. Commits are fsynced, as in
// production.

var benchValue = bytes.Repeat([]byte("v"), 100)

// benchKeys returns n tuple keys ("bench", i) in increasing order, the
// common append-mostly shape of the audit log and watermarks.
func benchKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = kv.Tuple{"bench", i}.Pack()
	}
	return keys
}

// openRawBolt opens bbolt with the options boltkv.Open uses.
func openRawBolt(b *testing.B, noSync bool) *bolt.DB {
	b.Helper()
	db, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, &bolt.Options{
		Timeout:      time.Second,
		FreelistType: bolt.FreelistMapType,
		NoSync:       noSync,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte("kv"))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	return db
}

func openBenchStore(b *testing.B, noSync bool) *boltkv.Store {
	b.Helper()
	s, err := boltkv.Open(filepath.Join(b.TempDir(), "kv.db"), boltkv.Options{NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// measure runs op b.N times (i is the iteration) and reports the median and
// the 99th percentile of its durations alongside ns/op.
func measure(b *testing.B, op func(i int) error) {
	rec := latency.NewRecorder(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		err := op(i)
		rec.Record(time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	sum := rec.Summary()
	b.ReportMetric(float64(sum.P50), "p50-ns")
	b.ReportMetric(float64(sum.P99), "p99-ns")
}

// BenchmarkCommit measures one committed transaction of 1, 100 or 1000
// writes (16-byte tuple keys, 100-byte values), fsynced as in production and
// with NoSync, where the time left is CPU and the overhead of boltkv shows
// without the noise of the disk.
func BenchmarkCommit(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		mode := "fsync"
		if noSync {
			mode = "nosync"
		}
		for _, writes := range []int{1, 100, 1000} {
			benchCommit(b, fmt.Sprintf("%s/writes=%d", mode, writes), writes, noSync)
		}
	}
}

func benchCommit(b *testing.B, name string, writes int, noSync bool) {
	ctx := context.Background()
	b.Run(name+"/boltkv", func(b *testing.B) {
		s := openBenchStore(b, noSync)
		keys := benchKeys(b.N * writes)
		measure(b, func(i int) error {
			return s.Update(ctx, func(tx kv.Txn) error {
				for _, k := range keys[i*writes : (i+1)*writes] {
					if err := tx.Set(k, benchValue); err != nil {
						return err
					}
				}
				return nil
			})
		})
	})
	b.Run(name+"/bbolt", func(b *testing.B) {
		db := openRawBolt(b, noSync)
		keys := benchKeys(b.N * writes)
		measure(b, func(i int) error {
			return db.Update(func(tx *bolt.Tx) error {
				bk := tx.Bucket([]byte("kv"))
				for _, k := range keys[i*writes : (i+1)*writes] {
					if err := bk.Put(k, benchValue); err != nil {
						return err
					}
				}
				return nil
			})
		})
	})
}

// BenchmarkRangeRead measures one View that reads 10,000 consecutive keys
// with their values into slices the caller owns. The bbolt baseline copies
// each pair as any caller must before the transaction ends; bbolt-nocopy
// only walks the cursor, the floor no real reader reaches.
func BenchmarkRangeRead(b *testing.B) {
	const n = 10_000
	ctx := context.Background()
	keys := benchKeys(n)
	begin, end := kv.Tuple{"bench"}.Range()

	b.Run("keys=10000/boltkv", func(b *testing.B) {
		s := openBenchStore(b, false)
		if err := s.Update(ctx, func(tx kv.Txn) error {
			for _, k := range keys {
				if err := tx.Set(k, benchValue); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		measure(b, func(_ int) error {
			return s.View(ctx, func(tx kv.ReadTxn) error {
				kvs, err := tx.GetRange(begin, end, kv.RangeOptions{})
				if err == nil && len(kvs) != n {
					err = fmt.Errorf("read %d pairs, want %d", len(kvs), n)
				}
				return err
			})
		})
	})

	for _, copyOut := range []bool{true, false} {
		name := "keys=10000/bbolt"
		if !copyOut {
			name += "-nocopy"
		}
		b.Run(name, func(b *testing.B) {
			db := openRawBolt(b, false)
			if err := db.Update(func(tx *bolt.Tx) error {
				bk := tx.Bucket([]byte("kv"))
				for _, k := range keys {
					if err := bk.Put(k, benchValue); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			measure(b, func(_ int) error {
				return db.View(func(tx *bolt.Tx) error {
					var out []kv.KeyValue
					size := 0
					c := tx.Bucket([]byte("kv")).Cursor()
					for k, v := c.Seek(begin); k != nil && bytes.Compare(k, end) < 0; k, v = c.Next() {
						if copyOut {
							out = append(out, kv.KeyValue{Key: bytes.Clone(k), Value: bytes.Clone(v)})
						} else {
							size += len(k) + len(v)
						}
					}
					if copyOut && len(out) != n || !copyOut && size == 0 {
						return fmt.Errorf("read %d pairs, want %d", len(out), n)
					}
					return nil
				})
			})
		})
	}
}

// BenchmarkAppend measures commits of 1,000 keys appended in order with
// values the size of an audit record (400 bytes), as the audit log writes
// them, with bbolt's default fill, AppendFillPercent and full pages, and reports
// the page writes per commit and the file's bytes per key (fsynced; the
// file grows in steps, so the figure settles from a few hundred commits).
func BenchmarkAppend(b *testing.B) {
	value := bytes.Repeat([]byte("r"), 400)
	const writes = 1000
	for _, fill := range []float64{0, boltkv.AppendFillPercent, 1} {
		b.Run(fmt.Sprintf("fill=%v", fill), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "kv.db")
			s, err := boltkv.Open(path, boltkv.Options{FillPercent: fill, InitialMmapSize: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			var key []byte
			before := s.Stats()
			measure(b, func(i int) error {
				return s.Update(ctx, func(tx kv.Txn) error {
					for j := range writes {
						key = kv.AppendInt(append(key[:0], 0x01), int64(i*writes+j))
						if err := tx.Set(key, value); err != nil {
							return err
						}
					}
					return nil
				})
			})
			st := s.Stats()
			b.ReportMetric(float64(st.PageWrites-before.PageWrites)/float64(st.Commits-before.Commits), "pages/commit")
			fi, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(fi.Size())/float64(b.N*writes), "file-bytes/key")
		})
	}
}
