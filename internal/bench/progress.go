package bench

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progress writes timestamped lines about the run to Config.Progress. It is
// safe for concurrent use.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	// every is how often watch prints.
	every time.Duration
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, start: time.Now(), every: time.Second}
}

// printf writes one line, prefixed with the time since the run started.
func (p *progress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "[%5.1fs] ", time.Since(p.start).Seconds())
	fmt.Fprintf(p.w, format, args...)
	fmt.Fprintln(p.w)
}

// watch prints "name: n/total" every p.every until the returned stop is
// called; stop waits for the printing goroutine to exit.
func (p *progress) watch(name string, total int, n func() int) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.printf("  %s: %d/%d", name, n(), total)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-exited
	}
}
