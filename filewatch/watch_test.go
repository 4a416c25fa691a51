package filewatch_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/filewatch"
	"github.com/codi2/codi2/internal/server"
	"github.com/codi2/codi2/internal/servertest"
	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is a Sink that keeps what it is handed, and can fail on
// demand; wrapped around AuditSink where a test needs the real log.
type recorder struct {
	mu      sync.Mutex
	changes []filewatch.Change
	next    filewatch.Sink
}

func (r *recorder) sink(ctx context.Context, c filewatch.Change) error {
	if r.next != nil {
		if err := r.next(ctx, c); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.changes = append(r.changes, c)
	r.mu.Unlock()
	return nil
}

func (r *recorder) all() []filewatch.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]filewatch.Change(nil), r.changes...)
}

// ops lists the recorded changes of path as their ops, in order.
func (r *recorder) ops(path string) []string {
	var ops []string
	for _, c := range r.all() {
		if c.Path == path {
			ops = append(ops, c.Op)
		}
	}
	return ops
}

// start runs a Watcher on root with cfg until the test ends.
func start(t testing.TB, cfg filewatch.Config, sink filewatch.Sink) *filewatch.Watcher {
	t.Helper()
	if cfg.Agent == "" {
		cfg.Agent = "agent-1"
	}
	w, err := filewatch.New(cfg, sink, bustest.Logger(t))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, 2*time.Second) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case <-w.Ready():
	case err := <-done:
		t.Fatalf("Run returned before it watched the tree: %v", err)
	}
	return w
}

func write(t testing.TB, path, data string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func eventually(t testing.TB, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, 20*time.Second, 10*time.Millisecond, fmt.Sprintf(msg, args...))
}

func TestWatcher_Run_RecordsEachKindOfChange(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "old.txt"), "old")
	write(t, filepath.Join(root, "gone.txt"), "bye")
	r := &recorder{}
	start(t, filewatch.Config{Root: root, Settle: 150 * time.Millisecond, Project: "git-abc"}, r.sink)

	write(t, filepath.Join(root, "src", "new.go"), "package x")
	write(t, filepath.Join(root, "old.txt"), "new content")
	require.NoError(t, os.Rename(filepath.Join(root, "gone.txt"), filepath.Join(root, "moved.txt")))
	eventually(t, func() bool { return len(r.all()) >= 3 }, "3 changes, got %v", r.all())
	require.NoError(t, os.Remove(filepath.Join(root, "moved.txt")))
	eventually(t, func() bool { return len(r.ops("moved.txt")) == 1 }, "moved.txt removed: %v", r.all())

	assert.Equal(t, []string{"create"}, r.ops("src/new.go"))
	assert.Equal(t, []string{"write"}, r.ops("old.txt"))
	assert.Equal(t, []string{"rename"}, r.ops("gone.txt"), "a move is one rename, from the old path")
	assert.Equal(t, []string{"remove"}, r.ops("moved.txt"))
	for _, c := range r.all() {
		assert.Equal(t, "agent-1", c.Agent)
		assert.Equal(t, "git-abc", c.Project)
		switch c.Path {
		case "src/new.go":
			assert.Equal(t, sum("package x"), c.SHA256)
			require.NotNil(t, c.Size)
			assert.EqualValues(t, 9, *c.Size)
		case "old.txt":
			assert.Equal(t, sum("new content"), c.SHA256)
		case "gone.txt":
			assert.Equal(t, "moved.txt", c.To)
			assert.Equal(t, sum("bye"), c.SHA256, "a move carries the file's hash")
		case "moved.txt":
			assert.Equal(t, "remove", c.Op)
			assert.Empty(t, c.SHA256)
		}
	}
}

func TestWatcher_Run_IgnoresGitAndGitignore(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, ".gitignore"), "*.log\nbuild/\n")
	write(t, filepath.Join(root, "sub", ".gitignore"), "secret.txt\n")
	write(t, filepath.Join(root, ".git", "HEAD"), "ref")
	r := &recorder{}
	start(t, filewatch.Config{Root: root, Settle: 150 * time.Millisecond}, r.sink)

	write(t, filepath.Join(root, ".git", "index"), "x")
	write(t, filepath.Join(root, "debug.log"), "x")
	write(t, filepath.Join(root, "build", "out.bin"), "x")
	write(t, filepath.Join(root, "sub", "secret.txt"), "x")
	write(t, filepath.Join(root, "secret.txt"), "kept: only sub/ ignores it")
	write(t, filepath.Join(root, "sub", "kept.txt"), "x")
	eventually(t, func() bool { return len(r.ops("sub/kept.txt")) == 1 && len(r.ops("secret.txt")) == 1 }, "kept files: %v", r.all())
	// A .gitignore written now applies from now on.
	write(t, filepath.Join(root, ".gitignore"), "*.log\nbuild/\n*.tmp\n")
	eventually(t, func() bool { return len(r.ops(".gitignore")) == 1 }, ".gitignore write: %v", r.all())
	write(t, filepath.Join(root, "x.tmp"), "x")
	write(t, filepath.Join(root, "last.txt"), "x")
	eventually(t, func() bool { return len(r.ops("last.txt")) == 1 }, "last.txt: %v", r.all())
	for _, c := range r.all() {
		assert.Contains(t, []string{"secret.txt", "sub/kept.txt", ".gitignore", "last.txt"}, c.Path)
	}
}

func TestWatcher_Run_CoalescesABurst(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "hot.txt"), "start")
	r := &recorder{}
	start(t, filewatch.Config{Root: root, Settle: 500 * time.Millisecond}, r.sink)

	f, err := os.OpenFile(filepath.Join(root, "hot.txt"), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	want := "start"
	for i := range 1000 {
		line := fmt.Sprintf("line %d\n", i)
		_, err := f.WriteString(line)
		require.NoError(t, err)
		want += line
	}
	require.NoError(t, f.Close())
	// An editor's save: a temporary file renamed over the file.
	write(t, filepath.Join(root, "doc.md.swp"), "saved")
	require.NoError(t, os.Rename(filepath.Join(root, "doc.md.swp"), filepath.Join(root, "doc.md")))

	eventually(t, func() bool { return len(r.ops("hot.txt")) == 1 && len(r.ops("doc.md")) == 1 }, "one write each: %v", r.all())
	c := r.all()
	for _, ch := range c {
		if ch.Path == "hot.txt" {
			assert.Equal(t, "write", ch.Op)
			assert.Equal(t, sum(want), ch.SHA256, "hashed after the burst settled")
		}
	}
	assert.Empty(t, r.ops("doc.md.swp"), "a temporary file that came and went within the window is no change")
	// Nothing more arrives for the burst.
	time.Sleep(750 * time.Millisecond) // a window and a half: proving an absence, not waiting for a result
	assert.Len(t, r.ops("hot.txt"), 1)
}

func TestWatcher_Run_DirectoryRemovedAndRecreated(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "pkg", "a", "x.go"), "x")
	r := &recorder{}
	start(t, filewatch.Config{Root: root, Settle: 150 * time.Millisecond}, r.sink)

	require.NoError(t, os.RemoveAll(filepath.Join(root, "pkg")))
	eventually(t, func() bool { return len(r.ops("pkg/a/x.go")) == 1 }, "removed: %v", r.all())
	write(t, filepath.Join(root, "pkg", "a", "x.go"), "again")
	write(t, filepath.Join(root, "pkg", "a", "b", "y.go"), "deep")
	eventually(t, func() bool { return len(r.ops("pkg/a/x.go")) == 2 && len(r.ops("pkg/a/b/y.go")) == 1 }, "recreated: %v", r.all())
	write(t, filepath.Join(root, "pkg", "a", "b", "y.go"), "deeper")
	eventually(t, func() bool { return len(r.ops("pkg/a/b/y.go")) == 2 }, "still watched: %v", r.all())
	assert.Equal(t, []string{"remove", "create"}, r.ops("pkg/a/x.go"))
	assert.Equal(t, []string{"create", "write"}, r.ops("pkg/a/b/y.go"))

	// A directory moved away: its files are renamed away, the new place's
	// files created.
	require.NoError(t, os.Rename(filepath.Join(root, "pkg"), filepath.Join(root, "lib")))
	eventually(t, func() bool { return len(r.ops("lib/a/b/y.go")) == 1 && len(r.ops("pkg/a/b/y.go")) == 3 }, "moved: %v", r.all())
	assert.Equal(t, "rename", r.ops("pkg/a/b/y.go")[2])
}

func TestWatcher_Run_WatchedDirectoryRecreated(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "work")
	write(t, filepath.Join(dir, "a.txt"), "a")
	r := &recorder{}
	start(t, filewatch.Config{Root: root, Dir: dir, Settle: 150 * time.Millisecond}, r.sink)
	write(t, filepath.Join(root, "outside.txt"), "not watched")

	require.NoError(t, os.RemoveAll(dir))
	eventually(t, func() bool { return len(r.ops("work/a.txt")) == 1 }, "removed: %v", r.all())
	write(t, filepath.Join(dir, "a.txt"), "back")
	eventually(t, func() bool { return len(r.ops("work/a.txt")) == 2 }, "recreated: %v", r.all())
	write(t, filepath.Join(dir, "b.txt"), "b")
	eventually(t, func() bool { return len(r.ops("work/b.txt")) == 1 }, "watched again: %v", r.all())
	assert.Empty(t, r.ops("outside.txt"))
}

// The watched directory removed and made again while a process has its
// working directory in it (the watcher's own, started in it, is the usual
// case): the kernel keeps the old directory alive and its watch silent, so
// nothing after the recreation was recorded (a new user's input: cd repo;
// codi2 watch --files; rm -rf and mkdir of the repository). A child
// process holds it here, so that the test's own directory stays put.
func TestWatcher_Run_WatchedDirectoryRecreatedWhileInUse(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "work")
	write(t, filepath.Join(dir, "a.txt"), "a")
	hold := exec.Command("sleep", "60")
	hold.Dir = dir
	require.NoError(t, hold.Start())
	t.Cleanup(func() { _ = hold.Process.Kill(); _ = hold.Wait() })
	r := &recorder{}
	start(t, filewatch.Config{Root: root, Dir: dir, Settle: 50 * time.Millisecond}, r.sink)

	// Made again at once, a check (rootCheckEvery) after the first: the
	// next check finds another directory there.
	time.Sleep(1100 * time.Millisecond)
	require.NoError(t, os.RemoveAll(dir))
	write(t, filepath.Join(dir, "b.txt"), "b")
	eventually(t, func() bool { return len(r.ops("work/a.txt")) == 1 }, "removed: %v", r.all())
	eventually(t, func() bool { return len(r.ops("work/b.txt")) == 1 }, "found again: %v", r.all())
	write(t, filepath.Join(dir, "sub", "c.txt"), "c")
	eventually(t, func() bool { return len(r.ops("work/sub/c.txt")) == 1 }, "watched again: %v", r.all())
	assert.Equal(t, []string{"remove"}, r.ops("work/a.txt"))
	assert.Equal(t, []string{"create"}, r.ops("work/b.txt"))

	// Removed again while in use, and left gone for longer than a check
	// (rootCheckEvery) before it comes back: the same outcome.
	hold2 := exec.Command("sleep", "60")
	hold2.Dir = dir
	require.NoError(t, hold2.Start())
	t.Cleanup(func() { _ = hold2.Process.Kill(); _ = hold2.Wait() })
	require.NoError(t, os.RemoveAll(dir))
	eventually(t, func() bool { return len(r.ops("work/b.txt")) == 2 }, "removed: %v", r.all())
	time.Sleep(1500 * time.Millisecond)
	write(t, filepath.Join(dir, "e.txt"), "e")
	eventually(t, func() bool { return len(r.ops("work/e.txt")) == 1 }, "found again: %v", r.all())
	assert.Equal(t, []string{"create", "remove"}, r.ops("work/b.txt"))
	assert.Equal(t, []string{"create", "remove"}, r.ops("work/sub/c.txt"))
}

// A known file replaced by a directory, a symbolic link or a FIFO is
// removed, and a file at that path again is created (a breaker's inputs:
// nothing was recorded, and the file back was a write).
func TestWatcher_Run_FileReplacedByADirectoryOrALink(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"fx", "sl", "fifo"} {
		write(t, filepath.Join(root, name), "F")
	}
	r := &recorder{}
	start(t, filewatch.Config{Root: root, Dir: root, Settle: 50 * time.Millisecond}, r.sink)
	for _, name := range []string{"fx", "sl", "fifo"} {
		require.NoError(t, os.Remove(filepath.Join(root, name)))
	}
	require.NoError(t, os.Mkdir(filepath.Join(root, "fx"), 0o755))
	require.NoError(t, os.Symlink("elsewhere", filepath.Join(root, "sl")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	eventually(t, func() bool {
		return len(r.ops("fx")) == 1 && len(r.ops("sl")) == 1 && len(r.ops("fifo")) == 1
	}, "removed: %v", r.all())
	write(t, filepath.Join(root, "fx", "inner"), "i")
	eventually(t, func() bool { return len(r.ops("fx/inner")) == 1 }, "inside the directory: %v", r.all())
	require.NoError(t, os.Remove(filepath.Join(root, "sl")))
	write(t, filepath.Join(root, "sl"), "back")
	eventually(t, func() bool { return len(r.ops("sl")) == 2 }, "back: %v", r.all())
	assert.Equal(t, []string{"remove"}, r.ops("fx"))
	assert.Equal(t, []string{"remove", "create"}, r.ops("sl"))
	assert.Equal(t, []string{"remove"}, r.ops("fifo"))
	assert.Equal(t, []string{"create"}, r.ops("fx/inner"))
}

// Two files swapped through a temporary name within one window (mv p1 t;
// mv p2 p1; mv t p2): both paths hold a file afterwards and both are in
// the log with their new content; the watcher knows both (a breaker's
// input: p2 was lost, and its next write was a create).
func TestWatcher_Run_SwapThroughATemporaryName(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "p1"), "P")
	write(t, filepath.Join(root, "p2"), "QQ")
	r := &recorder{}
	start(t, filewatch.Config{Root: root, Dir: root, Settle: 100 * time.Millisecond}, r.sink)
	require.NoError(t, os.Rename(filepath.Join(root, "p1"), filepath.Join(root, "t")))
	require.NoError(t, os.Rename(filepath.Join(root, "p2"), filepath.Join(root, "p1")))
	require.NoError(t, os.Rename(filepath.Join(root, "t"), filepath.Join(root, "p2")))
	content := func() map[string]string {
		m := map[string]string{}
		for _, c := range r.all() {
			to := c.Path
			if c.Op == "rename" {
				to = c.To
			}
			if c.SHA256 != "" {
				m[to] = c.SHA256
			}
		}
		return m
	}
	eventually(t, func() bool {
		m := content()
		return m["p1"] == sum("QQ") && m["p2"] == sum("P")
	}, "both paths with their new content: %v", r.all())
	write(t, filepath.Join(root, "p2"), "P2")
	eventually(t, func() bool { return content()["p2"] == sum("P2") }, "written: %v", r.all())
	last := r.all()[len(r.all())-1]
	assert.Equal(t, "write", last.Op, "p2 is known: %v", r.all())
	assert.Empty(t, r.ops("t"), "the temporary name held nothing that stayed")
}

func TestWatcher_Run_TenThousandFiles(t *testing.T) {
	root := t.TempDir()
	r := &recorder{}
	w := start(t, filewatch.Config{Root: root}, r.sink)
	const n = 10_000
	want := map[string]string{}
	for i := range n {
		p := filepath.Join("gen", fmt.Sprintf("d%02d", i%50), fmt.Sprintf("f%05d.txt", i))
		write(t, filepath.Join(root, p), fmt.Sprint(i))
		want[filepath.ToSlash(p)] = sum(fmt.Sprint(i))
	}
	// Each file is created once and its last record has its content. (A
	// writer slower than the window between open and write, as under -race
	// on a loaded machine, makes a create of the empty file and a write.)
	last := func() map[string]filewatch.Change {
		m := map[string]filewatch.Change{}
		for _, c := range r.all() {
			m[c.Path] = c
		}
		return m
	}
	eventually(t, func() bool {
		m := last()
		for p, h := range want {
			if m[p].SHA256 != h {
				return false
			}
		}
		return true
	}, "every file recorded with its content: %d records", len(r.all()))
	creates := map[string]int{}
	for _, c := range r.all() {
		if c.Op == "create" {
			creates[c.Path]++
		} else {
			assert.Equal(t, "write", c.Op, c.Path)
			assert.Equal(t, 1, creates[c.Path], "a write after its create: %s", c.Path)
		}
	}
	assert.Len(t, creates, n)
	for p, k := range creates {
		if k != 1 {
			t.Errorf("%s created %d times", p, k)
		}
	}
	t.Logf("stats: %+v, %d records for %d files", w.Stats(), len(r.all()), n)
}

func TestWatcher_Run_QueuesWhileTheSinkFailsAndReportsDrops(t *testing.T) {
	root := t.TempDir()
	down := true
	r := &recorder{next: func(context.Context, filewatch.Change) error {
		if down {
			return errors.New("server restarting")
		}
		return nil
	}}
	var mu sync.Mutex
	sink := func(ctx context.Context, c filewatch.Change) error {
		mu.Lock()
		defer mu.Unlock()
		return r.sink(ctx, c)
	}
	w := start(t, filewatch.Config{Root: root, Settle: 100 * time.Millisecond, MaxQueue: 3,
		RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}, sink)
	for i := range 5 {
		write(t, filepath.Join(root, fmt.Sprintf("f%d", i)), "x")
		eventually(t, func() bool { st := w.Stats(); return st.Queued+st.Dropped == i+1 }, "change %d noted: %+v", i, w.Stats())
	}
	assert.Equal(t, filewatch.Stats{Queued: 3, Dropped: 2}, w.Stats())
	mu.Lock()
	down = false
	mu.Unlock()
	eventually(t, func() bool { return len(r.all()) == 4 }, "3 changes and a report: %v", r.all())
	c := r.all()
	assert.Equal(t, "f0", c[0].Path, "the change that found the sink working again")
	assert.Equal(t, filewatch.OpDropped, c[1].Op, "then the report")
	assert.Equal(t, 2, c[1].Dropped)
	require.NotNil(t, c[1].First)
	assert.False(t, c[1].Last.Before(*c[1].First))
	assert.Equal(t, "f1", c[2].Path)
	assert.Equal(t, "f2", c[3].Path)
}

func TestWatcher_Run_KeepsGoingAcrossAServerRestart(t *testing.T) {
	data := t.TempDir()
	s, err := server.Start(context.Background(), server.Config{DataDir: data, NATSListen: "127.0.0.1:-1"}, bustest.Logger(t))
	require.NoError(t, err)
	url := s.Bus().ClientURL()
	nc := connect(t, url)
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	root := t.TempDir()
	start(t, filewatch.Config{Root: root, Settle: 100 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond},
		filewatch.AuditSink(ac, false))

	write(t, filepath.Join(root, "before.txt"), "1")
	eventually(t, func() bool { return len(logged(t, ac)) == 1 }, "first change logged")
	require.NoError(t, s.Stop())
	write(t, filepath.Join(root, "during.txt"), "2")
	write(t, filepath.Join(root, "during2.txt"), "3")
	host := url[len("nats://"):]
	s, err = server.Start(context.Background(), server.Config{DataDir: data, NATSListen: host}, bustest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	write(t, filepath.Join(root, "after.txt"), "4")
	eventually(t, func() bool { return len(logged(t, ac)) == 4 }, "all four changes logged, once: %v", logged(t, ac))
	paths := map[string]bool{}
	for _, rec := range logged(t, ac) {
		var c filewatch.Change
		require.NoError(t, json.Unmarshal(rec.Data, &c))
		assert.Equal(t, "create", c.Op)
		assert.Equal(t, "codi.audit.log.agent-1.file.create", rec.Subject)
		paths[c.Path] = true
	}
	assert.Len(t, paths, 4)
}

func TestWatcher_Run_AuditEventsInTheLog(t *testing.T) {
	ac, root := startAudited(t, 100*time.Millisecond)
	write(t, filepath.Join(root, "a.go"), "package a")
	eventually(t, func() bool { return len(logged(t, ac)) == 1 }, "logged")
	rec := logged(t, ac)[0]
	assert.Equal(t, "agent-1", rec.Source)
	assert.Equal(t, "file", rec.Category)
	assert.Contains(t, string(rec.Data), `"sha256":"`+sum("package a")+`"`)
}

// File names that are not UTF-8 keep their bytes in the log
// (path_base64, to_base64): x\xff.txt and x\xfe.txt were both "x\ufffd.txt"
// (a breaker's input), one path for two files.
func TestWatcher_Run_NamesThatAreNotUTF8(t *testing.T) {
	ac, root := startAudited(t, 50*time.Millisecond)
	write(t, filepath.Join(root, "x\xff.txt"), "ff")
	write(t, filepath.Join(root, "x\xfe.txt"), "fe")
	eventually(t, func() bool { return len(logged(t, ac)) == 2 }, "logged")
	require.NoError(t, os.Rename(filepath.Join(root, "x\xff.txt"), filepath.Join(root, "ok.txt")))
	eventually(t, func() bool { return len(logged(t, ac)) == 3 }, "renamed")
	names := map[string]string{} // the exact name, by content
	for _, rec := range logged(t, ac)[:2] {
		var c filewatch.Change
		require.NoError(t, json.Unmarshal(rec.Data, &c))
		raw, err := base64.StdEncoding.DecodeString(c.PathBase64)
		require.NoError(t, err)
		names[c.SHA256] = string(raw)
	}
	assert.Equal(t, map[string]string{sum("ff"): "x\xff.txt", sum("fe"): "x\xfe.txt"}, names)
	var mv filewatch.Change
	require.NoError(t, json.Unmarshal(logged(t, ac)[2].Data, &mv))
	assert.Equal(t, "rename", mv.Op)
	assert.Equal(t, base64.StdEncoding.EncodeToString([]byte("x\xff.txt")), mv.PathBase64)
	assert.Equal(t, "ok.txt", mv.To)
	assert.Empty(t, mv.ToBase64, "a UTF-8 name needs none")
}

// startAudited runs a Watcher on a new temporary tree with settle, its
// changes recorded in a real server's audit log; it returns a client of
// that log and the tree's root.
func startAudited(t *testing.T, settle time.Duration) (*audit.Client, string) {
	t.Helper()
	s := servertest.Start(t, false)
	ac, err := audit.NewClient(connect(t, s.Bus().ClientURL()))
	require.NoError(t, err)
	root := t.TempDir()
	start(t, filewatch.Config{Root: root, Settle: settle}, filewatch.AuditSink(ac, true))
	return ac, root
}

func connect(t testing.TB, url string) *natsConn {
	t.Helper()
	nc, err := natsConnect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// logged is the file events in the audit log, in log order.
func logged(t testing.TB, ac *audit.Client) []audit.Record {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := ac.Query(ctx, audit.Query{Category: "file", Limit: 1000})
	if err != nil {
		return nil
	}
	return res.Records
}

func TestConfig_Validate(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		name string
		cfg  filewatch.Config
	}{
		{"no root", filewatch.Config{}},
		{"relative root", filewatch.Config{Root: "x"}},
		{"relative dir", filewatch.Config{Root: root, Dir: "x"}},
		{"dir outside", filewatch.Config{Root: root, Dir: filepath.Dir(root)}},
		{"bad agent", filewatch.Config{Root: root, Agent: "a.b"}},
		{"negative queue", filewatch.Config{Root: root, MaxQueue: -1}},
		{"bad backoff", filewatch.Config{Root: root, RetryMin: time.Second, RetryMax: time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := filewatch.New(tc.cfg, func(context.Context, filewatch.Change) error { return nil }, zerolog.Nop())
			require.ErrorIs(t, err, filewatch.ErrConfig)
		})
	}
	_, err := filewatch.New(filewatch.Config{Root: root}, nil, zerolog.Nop())
	require.ErrorIs(t, err, filewatch.ErrConfig)
}

func TestWatcher_Run_OverflowRescans(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "keep.txt"), "same")
	write(t, filepath.Join(root, "edit.txt"), "v1")
	write(t, filepath.Join(root, "drop.txt"), "x")
	r := &recorder{}
	w := start(t, filewatch.Config{Root: root, Settle: 300 * time.Millisecond}, r.sink)
	write(t, filepath.Join(root, "edit.txt"), "v2 longer")
	write(t, filepath.Join(root, "d", "new.txt"), "n")
	require.NoError(t, os.Remove(filepath.Join(root, "drop.txt")))
	w.Inject(fsnotify.ErrEventOverflow)
	w.Inject(errors.New("some other watch error")) // logged, ignored
	eventually(t, func() bool { return len(r.all()) == 3 }, "three changes: %v", r.all())
	// The kernel's own events, decided after the window, add nothing.
	time.Sleep(500 * time.Millisecond) // proving an absence: past the window
	assert.Equal(t, []string{"write"}, r.ops("edit.txt"))
	assert.Equal(t, []string{"create"}, r.ops("d/new.txt"))
	assert.Equal(t, []string{"remove"}, r.ops("drop.txt"))
	assert.Equal(t, 1, w.Stats().Rescans)
}

func TestWatcher_Run_NoHashAndNoWindow(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "a.txt"), "a")
	require.NoError(t, os.Symlink("a.txt", filepath.Join(root, "link")))
	r := &recorder{}
	start(t, filewatch.Config{Root: root, Settle: -1, NoHash: true}, r.sink)
	write(t, filepath.Join(root, "b.txt"), "b")
	require.NoError(t, os.Symlink("b.txt", filepath.Join(root, "link2")))
	require.NoError(t, os.Chmod(filepath.Join(root, "a.txt"), 0o600))
	write(t, filepath.Join(root, "c.txt"), "c")
	eventually(t, func() bool { return len(r.ops("c.txt")) > 0 }, "c.txt: %v", r.all())
	for _, c := range r.all() {
		assert.Nil(t, c.Size)
		assert.Empty(t, c.SHA256)
		assert.NotEqual(t, "link2", c.Path, "symbolic links are not recorded")
		assert.NotEqual(t, "a.txt", c.Path, "a chmod is no change")
	}
	assert.Equal(t, "create", r.ops("b.txt")[0])
}

func TestWatcher_Run_SameContentIsNoChange(t *testing.T) {
	root := t.TempDir()
	r := &recorder{}
	start(t, filewatch.Config{Root: root, Settle: 150 * time.Millisecond}, r.sink)
	write(t, filepath.Join(root, "a.txt"), "a")
	eventually(t, func() bool { return len(r.ops("a.txt")) == 1 }, "created")
	write(t, filepath.Join(root, "a.txt"), "a")
	write(t, filepath.Join(root, "b.txt"), "b")
	eventually(t, func() bool { return len(r.ops("b.txt")) == 1 }, "b created")
	time.Sleep(300 * time.Millisecond) // proving an absence: past a.txt's window
	assert.Equal(t, []string{"create"}, r.ops("a.txt"), "rewritten with the same bytes")
	// A .gitignore removed stops ignoring.
	write(t, filepath.Join(root, ".gitignore"), "*.o\n")
	eventually(t, func() bool { return len(r.ops(".gitignore")) == 1 }, ".gitignore")
	require.NoError(t, os.Remove(filepath.Join(root, ".gitignore")))
	eventually(t, func() bool { return len(r.ops(".gitignore")) == 2 }, ".gitignore removed")
	write(t, filepath.Join(root, "x.o"), "o")
	eventually(t, func() bool { return len(r.ops("x.o")) == 1 }, "x.o no longer ignored: %v", r.all())
}

// A file written without a pause is recorded all the same, once its window
// has been open ten windows and a second.
func TestWatcher_Run_NeverQuietFile(t *testing.T) {
	root := t.TempDir()
	r := &recorder{}
	start(t, filewatch.Config{Root: root, Settle: 50 * time.Millisecond}, r.sink)
	f, err := os.Create(filepath.Join(root, "app.log"))
	require.NoError(t, err)
	defer f.Close()
	deadline := time.Now().Add(20 * time.Second)
	for len(r.ops("app.log")) == 0 {
		require.True(t, time.Now().Before(deadline), "never recorded while written")
		_, err := f.WriteString("line\n")
		require.NoError(t, err)
		time.Sleep(10 * time.Millisecond) // the writer's pace, shorter than the window
	}
	assert.Equal(t, "create", r.ops("app.log")[0])
}

// A file moved onto another known file (mv a b, b existing) is one rename
// naming its target, not a write of b and a rename of a without one.
func TestWatcher_Run_RenameOntoAnExistingFile(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "a.txt"), "the new content")
	write(t, filepath.Join(root, "b.txt"), "the old content")
	r := &recorder{}
	start(t, filewatch.Config{Root: root, Settle: 100 * time.Millisecond}, r.sink)

	require.NoError(t, os.Rename(filepath.Join(root, "a.txt"), filepath.Join(root, "b.txt")))
	eventually(t, func() bool { return len(r.ops("a.txt")) == 1 }, "a.txt renamed: %v", r.all())
	write(t, filepath.Join(root, "last.txt"), "x")
	eventually(t, func() bool { return len(r.ops("last.txt")) == 1 }, "last.txt: %v", r.all())
	assert.Empty(t, r.ops("b.txt"), "no write of the target: %v", r.all())
	for _, c := range r.all() {
		if c.Path == "a.txt" {
			assert.Equal(t, filewatch.OpRename, c.Op)
			assert.Equal(t, "b.txt", c.To, "the rename names its target")
			assert.Equal(t, sum("the new content"), c.SHA256)
		}
	}
}

// A codi2 server's data directory inside the watched tree (the README's
// default, ./codi2-data, in a repository that does not ignore it) is
// skipped: every commit writes its files, so recording them recorded the
// recording for ever (65 audit records in 5 s from one event). Both the
// server started before the watcher and one started after it, whose lock
// file appears before the rest of its directory.
func TestWatcher_Run_SkipsCodi2DataDirectories(t *testing.T) {
	root := t.TempDir()
	before, err := server.Start(context.Background(), server.Config{DataDir: filepath.Join(root, "codi2-data"), NATSListen: "127.0.0.1:-1"}, bustest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = before.Stop() })
	ac, err := audit.NewClient(connect(t, before.Bus().ClientURL()))
	require.NoError(t, err)
	r := &recorder{next: filewatch.AuditSink(ac, true)}
	start(t, filewatch.Config{Root: root, Settle: 50 * time.Millisecond}, r.sink)

	after, err := server.Start(context.Background(), server.Config{DataDir: filepath.Join(root, "sub", "later-data"), NATSListen: "127.0.0.1:-1"}, bustest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = after.Stop() })
	ac2, err := audit.NewClient(connect(t, after.Bus().ClientURL()))
	require.NoError(t, err)
	for i := range 5 {
		write(t, filepath.Join(root, fmt.Sprintf("f%d.txt", i)), "x")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := ac2.Log(ctx, "agent-2", "note", []byte(`{"n":1}`))
		cancel()
		require.NoError(t, err)
	}
	eventually(t, func() bool { return len(r.ops("f4.txt")) == 1 }, "f4.txt: %v", r.all())
	// Each recorded change committed to the first server's data directory
	// and each log call to the second's; let a loop show itself.
	time.Sleep(500 * time.Millisecond)
	for _, c := range r.all() {
		assert.Regexp(t, `^f\d\.txt$`, c.Path, "only the files written, nothing of the servers' data: %v", r.all())
	}
	assert.Len(t, r.all(), 5)
}

// A file removed and another created whose inode number the kernel
// reused is a remove and a create, not a rename: only a path the kernel
// said was moved away is the old name of a move.
func TestWatcher_Run_RemoveThenCreateReusingTheInode(t *testing.T) {
	root := t.TempDir()
	r := &recorder{}
	start(t, filewatch.Config{Root: root, Settle: 100 * time.Millisecond}, r.sink)
	reused := 0
	for i := range 10 {
		x := filepath.Join(root, "a", fmt.Sprintf("x%d.txt", i))
		write(t, x, "old")
		eventually(t, func() bool { return len(r.ops(fmt.Sprintf("a/x%d.txt", i))) == 1 }, "x%d created: %v", i, r.all())
		fi, err := os.Stat(x)
		require.NoError(t, err)
		require.NoError(t, os.Remove(x))
		y := filepath.Join(root, "b", fmt.Sprintf("y%d.txt", i))
		write(t, y, fmt.Sprintf("different %d", i))
		fy, err := os.Stat(y)
		require.NoError(t, err)
		if os.SameFile(fi, fy) {
			reused++
		}
		eventually(t, func() bool { return len(r.ops(fmt.Sprintf("a/x%d.txt", i))) == 2 }, "x%d removed: %v", i, r.all())
		eventually(t, func() bool { return len(r.ops(fmt.Sprintf("b/y%d.txt", i))) == 1 }, "y%d: %v", i, r.all())
		assert.Equal(t, []string{"create", "remove"}, r.ops(fmt.Sprintf("a/x%d.txt", i)), "x%d: %v", i, r.all())
		assert.Equal(t, []string{"create"}, r.ops(fmt.Sprintf("b/y%d.txt", i)))
	}
	// The case exists only where the kernel reuses the number; Linux's
	// file systems do, nearly every time here.
	t.Logf("the kernel reused the inode %d times of 10", reused)
	require.Positive(t, reused, "no inode number was reused: the test shows nothing on this file system")
}
