package v1sim

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Integrity is what Verify counted in a log. It is a plain value, safe to
// share.
//
// Every line is either Parsed or Corrupted. A parsed line is either a
// faithful copy of an event the run wrote (the first copy, or a Duplicated
// one) or Spliced. Lost counts the events with no faithful copy, so
// Lost = Expected - (Parsed - Duplicated - Spliced).
type Integrity struct {
	// Expected is Writers * EventsPerWriter: the events a complete run
	// appends.
	Expected int
	// Lines counts newline-terminated lines plus a final unterminated one.
	Lines int
	// Bytes is the size of the log as read.
	Bytes int64
	// Parsed counts lines that decode as one JSON object.
	Parsed int
	// Corrupted counts lines that do not: in a v1 log, torn lines with
	// another writer's bytes spliced in.
	Corrupted int
	// Spliced counts parsed lines that are not a faithful copy of any event
	// the run wrote: no writer and n, a pair outside the run, or fields that
	// differ from what that writer wrote as event n (the timestamp is not
	// checked). In a v1 log these are the halves of two torn lines that
	// happened to join into valid JSON, such as one event's head with
	// another's tail: wrong data that every reader accepts.
	Spliced int
	// Duplicated counts faithful copies of an event already seen.
	Duplicated int
	// Lost counts events with no faithful copy. A reader cannot see them,
	// even though, in Buffered mode, their bytes are in the file.
	Lost int
}

// LossRate returns Lost as a fraction of Expected, or 0 when nothing was
// expected. It is safe for concurrent use.
func (i Integrity) LossRate() float64 {
	if i.Expected == 0 {
		return 0
	}
	return float64(i.Lost) / float64(i.Expected)
}

// Verify reads the log at path line by line, as v1's readers did, and counts
// what survived a run of cfg, which must be the Config given to RunWrites:
// events are deterministic apart from their timestamps, so Verify knows what
// every line should say. It measures; it does not repair. Verify only reads,
// so it is safe for concurrent use, but counts are meaningful only once the
// run has returned.
func Verify(path string, cfg Config) (Integrity, error) {
	if err := cfg.Validate(); err != nil {
		return Integrity{}, err
	}
	cfg = cfg.WithDefaults()
	in := Integrity{Expected: cfg.Writers * cfg.EventsPerWriter}
	seen := make([]bool, in.Expected)
	pad := strings.Repeat("x", cfg.PayloadBytes)

	lines, size, err := eachLine(path, func(line []byte) {
		// Writer and N are pointers to tell a missing field from zero.
		var e struct {
			Event
			Writer *int `json:"writer"`
			N      *int `json:"n"`
		}
		// Unmarshal checks the whole line, so a splice anywhere in it
		// counts as corruption unless the result is valid JSON.
		if json.Unmarshal(line, &e) != nil {
			in.Corrupted++
			return
		}
		in.Parsed++
		if e.Writer == nil || e.N == nil {
			in.Spliced++
			return
		}
		w, n := *e.Writer, *e.N
		if w < 0 || w >= cfg.Writers || n < 0 || n >= cfg.EventsPerWriter {
			in.Spliced++
			return
		}
		e.Event.Writer, e.Event.N = w, n
		if e.Event != newEvent(w, n, pad, e.TS) {
			in.Spliced++
			return
		}
		k := w*cfg.EventsPerWriter + n
		if seen[k] {
			in.Duplicated++
			return
		}
		seen[k] = true
	})
	in.Lines, in.Bytes = lines, size
	if err != nil {
		return in, fmt.Errorf("v1sim: verify: %w", err)
	}
	for _, ok := range seen {
		if !ok {
			in.Lost++
		}
	}
	return in, nil
}
