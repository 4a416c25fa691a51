package filewatch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/codi2/codi2/internal/retry"
	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// Sink records one change. It returns nil once the change is stored; an
// error makes the Watcher retry the same Change (same ID) later, so a Sink
// must be idempotent per Change.ID. Called from one goroutine at a time.
type Sink func(ctx context.Context, c Change) error

// Stats counts a Watcher's changes. A plain value.
type Stats struct {
	// Recorded is how many changes the Sink stored.
	Recorded int
	// Queued is how many wait for the Sink now.
	Queued int
	// Dropped is how many changes the full queue dropped, in total.
	Dropped int
	// Rescans is how many kernel queue overflows were repaired by a scan.
	Rescans int
}

// fileInfo is what the watcher knows of a file: enough to tell a change
// from none. hash is "" when not computed (NoHash, or the initial scan).
type fileInfo struct {
	size  int64
	mtime time.Time
	hash  string
	ino   uint64 // 0: unknown
}

// pend is a file's kernel events within the current window.
type pend struct {
	seen, last time.Time
	ops        fsnotify.Op
}

// Watcher watches one directory tree and records its changes. Create it
// with New; Run runs it once. Stats is safe for concurrent use; nothing
// else is meant to be called concurrently with Run.
type Watcher struct {
	cfg    Config
	sink   Sink
	log    zerolog.Logger
	runID  string
	dirRel string // the watched directory relative to the root ("" for the root)

	// Owned by Run's loop.
	fw      *fsnotify.Watcher
	ign     *ignorer
	files   map[string]fileInfo
	inodes  map[uint64]string // the known files by inode, to pair a move
	dirs    map[string]bool
	pending map[string]*pend
	n       uint64
	flushed time.Time // the last flush
	// dirIno is the watched directory's inode number, rootChecked when
	// checkRoot last looked at it.
	dirIno      uint64
	rootChecked time.Time

	// The queue between the loop and the sender.
	mu       sync.Mutex
	queue    []Change
	report   *Change // a dropped report being sent
	dropped  int     // dropped since the last report
	firstDrp time.Time
	lastDrp  time.Time
	closing  bool
	wake     chan struct{}
	stats    Stats
	ready    chan struct{}
}

// New returns a Watcher for cfg that hands changes to sink. It fails with
// ErrConfig for an invalid cfg.
func New(cfg Config, sink Sink, log zerolog.Logger) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sink == nil {
		return nil, fmt.Errorf("%w: no sink", ErrConfig)
	}
	cfg = cfg.withDefaults()
	rel, _ := filepath.Rel(cfg.Root, cfg.Dir)
	rel = filepath.ToSlash(rel)
	if rel == "." {
		rel = ""
	}
	return &Watcher{
		cfg: cfg, sink: sink, dirRel: rel,
		log:   log.With().Str("component", "filewatch").Logger(),
		runID: "file-" + cfg.Agent + "-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		ign:   newIgnorer(cfg.Root), files: map[string]fileInfo{}, inodes: map[uint64]string{}, dirs: map[string]bool{},
		pending: map[string]*pend{}, wake: make(chan struct{}, 1), ready: make(chan struct{}),
	}, nil
}

// Ready is closed once Run watches the whole tree: changes made after it
// are recorded. Safe for concurrent use.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Stats returns the counts so far. Safe for concurrent use.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Queued = len(w.queue)
	return s
}

// Run watches until ctx ends, then decides the changes still in their
// window, gives the Sink up to grace to take the queue, and returns once
// its goroutines have ended. Changes it could not hand over are logged at
// error with their count. It fails with ErrWatch when the tree cannot be
// watched. Run runs once.
func (w *Watcher) Run(ctx context.Context, grace time.Duration) error {
	fw, err := fsnotify.NewBufferedWatcher(1 << 16)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrWatch, err)
	}
	w.fw = fw
	defer fw.Close()
	// The .gitignore files from the root down to the watched directory.
	for d := w.dirRel; ; d = parent(d) {
		w.ign.load(d)
		if d == "" {
			break
		}
	}
	if err := w.addTree(w.dirRel, false); err != nil {
		return err
	}
	w.log.Info().Str("dir", w.cfg.Dir).Int("files", len(w.files)).Int("dirs", len(w.dirs)).Msg("watching")
	close(w.ready)

	sendCtx, stopSend := context.WithCancel(context.Background())
	defer stopSend()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.send(sendCtx)
	}()

	err = w.loop(ctx)
	w.flush(time.Now(), true)
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	w.signal()
	t := time.AfterFunc(grace, stopSend)
	wg.Wait()
	t.Stop()
	if st := w.Stats(); st.Queued > 0 || w.unreported() > 0 {
		w.log.Error().Int("unsent", st.Queued).Int("dropped", w.unreported()).Msg("stopped with changes not recorded")
	}
	return err
}

func (w *Watcher) loop(ctx context.Context) error {
	tick := time.NewTicker(max(min(w.cfg.Settle/4, 25*time.Millisecond), time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fw.Events:
			if !ok {
				return fmt.Errorf("%w: the kernel watch closed", ErrWatch)
			}
			w.note(ev, time.Now())
			if w.cfg.Settle == 0 && len(w.fw.Events) == 0 {
				w.flush(time.Now(), true)
			}
		case err, ok := <-w.fw.Errors:
			if !ok {
				return fmt.Errorf("%w: the kernel watch closed", ErrWatch)
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Warn().Msg("kernel event queue overflowed: rescanning the tree")
				w.rescan()
				continue
			}
			w.log.Warn().Err(err).Msg("watch error")
		case now := <-tick.C:
			w.flush(now, false)
			w.checkRoot(now)
		}
	}
}

// rootCheckEvery is how often checkRoot looks at a watched directory the
// kernel has not said is gone.
const rootCheckEvery = time.Second

// checkRoot watches the watched directory again once it is back after a
// removal, its files as created; and notices a removal the kernel does not
// report. A directory's watch reports its removal (IN_DELETE_SELF,
// inotify(7)) only once the directory is freed, which a process whose
// working directory it is (the watcher's own, started in it, or an
// agent's shell) puts off for as long as that process runs; its parent,
// which would report the unlink, is not watched. So checkRoot compares the
// path's inode number with the watched one every rootCheckEvery: another
// directory there is watched afresh and rescanned, the path gone is the
// removal.
func (w *Watcher) checkRoot(now time.Time) {
	if w.dirs[w.dirRel] {
		if now.Sub(w.rootChecked) < rootCheckEvery {
			return
		}
		w.rootChecked = now
		fi, err := os.Stat(w.cfg.Dir)
		if err == nil && fi.IsDir() && (w.dirIno == 0 || inodeOf(fi) == w.dirIno) {
			return
		}
		w.log.Debug().Str("dir", w.cfg.Dir).Msg("the watched directory was removed or replaced; its watch did not say")
		// The old tree's watches are on directories that are gone: watch
		// what is there now, from scratch.
		for d := range w.dirs {
			delete(w.dirs, d)
			_ = w.fw.Remove(w.abs(d))
		}
		if err == nil && fi.IsDir() {
			// Back already: compared file by file, so that a file as it
			// was is no change (and a file system whose inode numbers
			// are not stable costs a walk, not false changes).
			w.rescan()
		} else {
			w.dropTree(w.dirRel, OpRemove, now)
		}
		return
	}
	if fi, err := os.Stat(w.cfg.Dir); err == nil && fi.IsDir() {
		w.watchNew(w.dirRel)
	}
}

// note adds a kernel event to its file's window.
func (w *Watcher) note(ev fsnotify.Event, now time.Time) {
	if ev.Op == fsnotify.Chmod {
		return // permissions and times only: the content is unchanged
	}
	rel, ok := w.rel(ev.Name)
	if !ok {
		return
	}
	w.ign.forgetDataDir(rel)
	if w.ign.ignored(rel, false) {
		return
	}
	p := w.pending[rel]
	if p == nil {
		p = &pend{seen: now}
		w.pending[rel] = p
	}
	p.last = now
	p.ops |= ev.Op
}

// flush decides every window that has been quiet for Settle, or all.
// While kernel events wait to be read it waits for them (up to a second),
// so that a window is not closed on a file whose next event is queued.
func (w *Watcher) flush(now time.Time, all bool) {
	if !all && len(w.fw.Events) > 0 && now.Sub(w.flushed) < time.Second {
		return
	}
	w.flushed = now
	// Directories first (a recreated one drops its old tree before its
	// files are decided), then files, then what is gone (a move's new
	// name pairs it first).
	var dirs, files, gone []string
	for rel, p := range w.pending {
		if !all && now.Sub(p.seen) <= w.maxOpen() && (now.Sub(p.last) < w.cfg.Settle || w.busy(rel, p, now)) {
			continue
		}
		switch fi, err := os.Lstat(w.abs(rel)); {
		case err != nil:
			gone = append(gone, rel)
		case fi.IsDir():
			dirs = append(dirs, rel)
		default:
			files = append(files, rel)
		}
	}
	for _, group := range [][]string{dirs, files, gone} {
		for _, rel := range group {
			if p := w.pending[rel]; p != nil {
				delete(w.pending, rel)
				w.decide(rel, p)
			}
		}
	}
}

// maxOpen bounds a window: a file written without a pause is decided ten
// windows and a second after its first event, and again after the next.
func (w *Watcher) maxOpen() time.Duration { return 10*w.cfg.Settle + time.Second }

// busy keeps rel's window open while the file's modification time says it
// was written within Settle (its writer may still be at it).
func (w *Watcher) busy(rel string, _ *pend, now time.Time) bool {
	fi, err := os.Lstat(w.abs(rel))
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	age := now.Sub(fi.ModTime())
	return age >= 0 && age < w.cfg.Settle
}

// decide compares rel with what the watcher knew and records the change.
func (w *Watcher) decide(rel string, p *pend) {
	abs := w.abs(rel)
	fi, err := os.Lstat(abs)
	if rel != w.dirRel && w.ign.ignored(rel, err == nil && fi.IsDir()) {
		// Ignored since its event: a codi2 data directory made around it
		// (its lock file came before the rest), or a .gitignore changed.
		return
	}
	if err == nil && !fi.Mode().IsRegular() {
		// Not a file now: a known file replaced by a directory, a
		// symbolic link or a FIFO is gone (rm f; mkdir f).
		w.removedFile(rel, p)
	}
	if err == nil && fi.IsDir() {
		if w.dirs[rel] && p.ops&(fsnotify.Remove|fsnotify.Rename) != 0 {
			// Removed (or moved away) and made again within the window:
			// the old tree is gone, its watches with it.
			w.dropTree(rel, OpRemove, p.seen)
		}
		if !w.dirs[rel] && !w.ign.ignored(rel, true) {
			w.watchNew(rel) // a new or recreated directory
		}
		return
	}
	if err == nil && fi.Mode().IsRegular() {
		if path.Base(rel) == ".gitignore" {
			w.ign.load(parent(rel))
		}
		info, err := w.info(abs, fi)
		if err == nil {
			w.present(rel, info, p.seen)
			return
		}
		// Gone while it was read: a removal.
	} else if err == nil {
		return // a symbolic link, a socket...: not recorded
	}
	if path.Base(rel) == ".gitignore" {
		w.ign.load(parent(rel))
	}
	if w.dirs[rel] || rel == w.dirRel {
		w.dropTree(rel, p.goneOp(), p.seen)
	}
	w.removedFile(rel, p)
}

// goneOp is the op of a path that is gone: OpRename when the kernel said
// it was moved away, else OpRemove.
func (p *pend) goneOp() string {
	if p.ops&fsnotify.Rename != 0 {
		return OpRename
	}
	return OpRemove
}

// removedFile records that the known file rel is gone (moved away when
// the kernel said so): a rename without a destination, or a remove.
func (w *Watcher) removedFile(rel string, p *pend) {
	if _, known := w.files[rel]; !known {
		return
	}
	w.forget(rel)
	w.emit(Change{Op: p.goneOp(), Path: rel}, p.seen)
}

// present records that rel exists with info: a create when unknown, a
// write when its content changed.
func (w *Watcher) present(rel string, info fileInfo, seen time.Time) {
	old, known := w.files[rel]
	from, taken := "", false
	if !known || old.ino != info.ino {
		// Unknown, or another file now (moved onto a known one: mv a b
		// replaces b): a known file gone from its path makes it a move.
		from, taken = w.movedFrom(rel, info)
	}
	w.remember(rel, info)
	if known && from == "" && unchanged(old, info) {
		return
	}
	c := Change{Op: OpWrite, Path: rel}
	switch {
	case from != "":
		// A known file gone from its path, under this one: a move (onto
		// rel's old file, when rel was known: its content is replaced).
		w.forget(from)
		if !taken {
			delete(w.pending, from) // gone: nothing left to decide there
		} // else another file is there now, decided on its own
		c.Op, c.Path, c.To = OpRename, from, rel
	case !known:
		c.Op = OpCreate
	}
	if !w.cfg.NoHash {
		c.Size, c.SHA256 = &info.size, info.hash
	}
	w.emit(c, seen)
}

// remember records that rel exists with info.
func (w *Watcher) remember(rel string, info fileInfo) {
	if old, ok := w.files[rel]; ok && old.ino != 0 && w.inodes[old.ino] == rel {
		delete(w.inodes, old.ino)
	}
	w.files[rel] = info
	if info.ino != 0 {
		w.inodes[info.ino] = rel
	}
}

// forget drops rel from the known files.
func (w *Watcher) forget(rel string) {
	if old, ok := w.files[rel]; ok && old.ino != 0 && w.inodes[old.ino] == rel {
		delete(w.inodes, old.ino)
	}
	delete(w.files, rel)
}

// movedFrom is the known path of the file now at rel when the kernel said
// that path was moved away (fsnotify.Rename) and it no longer holds the
// file (the file was moved to rel), else "": the same inode number alone
// is not a move, the kernel hands a removed file's number out again.
// taken says another file is at that path now (a swap through a temporary
// name: mv a t; mv b a; mv t b).
func (w *Watcher) movedFrom(rel string, info fileInfo) (from string, taken bool) {
	from, ok := w.inodes[info.ino]
	if info.ino == 0 || !ok || from == rel {
		return "", false
	}
	if p := w.pending[from]; p == nil || p.ops&fsnotify.Rename == 0 {
		// The kernel did not say it was moved away: a file removed, and
		// its inode number reused by the new one (rm a; echo > b).
		return "", false
	}
	fi, err := os.Lstat(w.abs(from))
	if err == nil && inodeOf(fi) == info.ino {
		return "", false // still there: a hard link
	}
	return from, err == nil
}

// unchanged: the same content, by hash when both are known, else by size
// and modification time.
func unchanged(a, b fileInfo) bool {
	if a.size != b.size {
		return false
	}
	if a.hash != "" && b.hash != "" {
		return a.hash == b.hash
	}
	return a.mtime.Equal(b.mtime)
}

// info reads abs's size, time and (unless NoHash) SHA-256.
func (w *Watcher) info(abs string, fi fs.FileInfo) (fileInfo, error) {
	info := fileInfo{size: fi.Size(), mtime: fi.ModTime(), ino: inodeOf(fi)}
	if w.cfg.NoHash {
		return info, nil
	}
	f, err := os.Open(abs)
	if err != nil {
		return info, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return info, err
	}
	info.size, info.hash = n, hex.EncodeToString(h.Sum(nil))
	return info, nil
}

// addTree watches rel and every directory below it that is not ignored,
// and learns its files; with report, files it did not know are decided
// like kernel events (a directory that appeared: its files may predate its
// watch).
func (w *Watcher) addTree(rel string, report bool) error {
	return filepath.WalkDir(w.abs(rel), func(p string, d fs.DirEntry, err error) error {
		r, ok := w.rel(p)
		if err != nil || !ok {
			return nil // gone again: its events say so
		}
		if d.IsDir() {
			if r != "" && w.ign.ignored(r, true) {
				return filepath.SkipDir
			}
			w.ign.load(r)
			if err := w.fw.Add(p); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return filepath.SkipDir
				}
				return fmt.Errorf("%w: %s: %v (raise /proc/sys/fs/inotify/max_user_watches?)", ErrWatch, p, err)
			}
			w.dirs[r] = true
			if r == w.dirRel {
				if fi, err := d.Info(); err == nil {
					w.dirIno = inodeOf(fi)
				}
			}
			return nil
		}
		if !d.Type().IsRegular() || w.ign.ignored(r, false) {
			return nil
		}
		if !report {
			if fi, err := d.Info(); err == nil {
				w.remember(r, fileInfo{size: fi.Size(), mtime: fi.ModTime(), ino: inodeOf(fi)})
			}
			return nil
		}
		if _, known := w.files[r]; !known && w.pending[r] == nil {
			// Decided like a kernel event, once quiet: it may be being
			// written now.
			now := time.Now()
			w.pending[r] = &pend{seen: now, last: now, ops: fsnotify.Create}
		}
		return nil
	})
}

// watchNew watches the directory rel that appeared, its files as created;
// a directory the kernel will not watch (the watch limit) is logged at
// error, and its changes go unrecorded until the watcher restarts.
func (w *Watcher) watchNew(rel string) {
	if err := w.addTree(rel, true); err != nil {
		w.log.Error().Err(err).Str("dir", rel).Msg("cannot watch a new directory: its changes are not recorded")
	}
}

// dropTree forgets the directory rel and records every file the watcher
// knew below it as removed (op): a directory removed or moved away.
func (w *Watcher) dropTree(rel, op string, seen time.Time) {
	for d := range w.dirs {
		if under(d, rel) {
			delete(w.dirs, d)
			_ = w.fw.Remove(w.abs(d))
		}
	}
	for f := range w.files {
		if under(f, rel) {
			w.forget(f)
			w.emit(Change{Op: op, Path: f}, seen)
		}
	}
}

// rescan repairs a lost kernel queue: it walks the tree and decides every
// file whose size or time differ from what the watcher knows, and every
// known file that is gone.
func (w *Watcher) rescan() {
	w.mu.Lock()
	w.stats.Rescans++
	w.mu.Unlock()
	seen := map[string]bool{}
	now := time.Now()
	_ = filepath.WalkDir(w.abs(w.dirRel), func(p string, d fs.DirEntry, err error) error {
		r, ok := w.rel(p)
		if err != nil || !ok {
			return nil
		}
		if d.IsDir() {
			if r != w.dirRel && w.ign.ignored(r, true) {
				return filepath.SkipDir
			}
			if !w.dirs[r] {
				w.watchNew(r)
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || w.ign.ignored(r, false) {
			return nil
		}
		seen[r] = true
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if old, known := w.files[r]; !known || old.size != fi.Size() || !old.mtime.Equal(fi.ModTime()) {
			w.decide(r, &pend{seen: now, ops: fsnotify.Write})
		}
		return nil
	})
	for f := range w.files {
		if !seen[f] && under(f, w.dirRel) {
			w.decide(f, &pend{seen: now, ops: fsnotify.Remove})
		}
	}
}

// emit queues c, or counts it as dropped when the queue is full.
func (w *Watcher) emit(c Change, seen time.Time) {
	w.n++
	c.ID = w.runID + "-" + strconv.FormatUint(w.n, 10)
	c.Agent, c.Project, c.Seen = w.cfg.Agent, w.cfg.Project, seen
	c.Time = time.Now().UTC()
	c.exactBytes()
	w.mu.Lock()
	if len(w.queue) >= w.cfg.MaxQueue {
		if w.dropped == 0 {
			w.firstDrp = c.Time
			w.log.Error().Int("queue", w.cfg.MaxQueue).Str("path", c.Path).
				Msg("change queue full while changes cannot be recorded: dropping changes (counted, reported once recording works)")
		}
		w.dropped++
		w.stats.Dropped++
		w.lastDrp = c.Time
		w.mu.Unlock()
		return
	}
	w.queue = append(w.queue, c)
	w.mu.Unlock()
	w.signal()
}

func (w *Watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Watcher) unreported() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.dropped
	if w.report != nil {
		n += w.report.Dropped
	}
	return n
}

// next returns the change to send: a report of dropped changes first (made
// once the Sink works, so that it counts every change dropped while it did
// not), then the oldest queued change. ok is false when there is none.
func (w *Watcher) next(working bool) (c Change, closing, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.report == nil && w.dropped > 0 && working {
		first, last := w.firstDrp, w.lastDrp
		w.report = &Change{Op: OpDropped, Agent: w.cfg.Agent, Project: w.cfg.Project, Time: time.Now().UTC(),
			Dropped: w.dropped, First: &first, Last: &last, ID: w.runID + "-dropped-" + strconv.Itoa(w.stats.Dropped)}
		w.dropped = 0
	}
	if w.report != nil {
		return *w.report, w.closing, true
	}
	if len(w.queue) > 0 {
		return w.queue[0], w.closing, true
	}
	return Change{}, w.closing, false
}

// done removes c, sent, from the queue.
func (w *Watcher) done(c Change) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.Recorded++
	if w.report != nil && c.ID == w.report.ID {
		w.log.Error().Int("dropped", c.Dropped).Time("first", *c.First).Time("last", *c.Last).
			Msg("changes dropped while they could not be recorded (reported as file.dropped)")
		w.report = nil
		return
	}
	w.queue[0] = Change{}
	w.queue = w.queue[1:]
}

// send hands queued changes to the Sink in order, retrying a failing Sink
// with backoff, until ctx ends or, once Run is closing, the queue is empty.
func (w *Watcher) send(ctx context.Context) {
	backoff := retry.Backoff{Delay: w.cfg.RetryMin, Max: w.cfg.RetryMax}
	failing := false
	for {
		c, closing, ok := w.next(!failing)
		if !ok {
			if closing {
				return
			}
			select {
			case <-w.wake:
			case <-ctx.Done():
				return
			}
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := w.sink(sctx, c)
		cancel()
		if err == nil {
			if failing {
				w.log.Info().Msg("recording changes again")
			}
			failing, backoff.Delay = false, w.cfg.RetryMin
			w.done(c)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if !failing {
			w.log.Warn().Err(err).Str("path", c.Path).Msg("cannot record changes: queueing them and retrying")
			failing = true
		}
		if backoff.Wait(ctx) != nil {
			return
		}
	}
}

// rel returns abs relative to the root, with slashes ("" for the root);
// ok is false outside it.
func (w *Watcher) rel(abs string) (string, bool) {
	r, err := filepath.Rel(w.cfg.Root, abs)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return "", false
	}
	r = filepath.ToSlash(r)
	if r == "." {
		r = ""
	}
	return r, true
}

func (w *Watcher) abs(rel string) string {
	return filepath.Join(w.cfg.Root, filepath.FromSlash(rel))
}

// parent is rel's directory ("" for the root).
func parent(rel string) string {
	d := path.Dir(rel)
	if d == "." || d == "/" {
		return ""
	}
	return d
}

// under reports whether p is dir or below it ("" is the root).
func under(p, dir string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}
