package v1sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// ScanState returns the status carried by the last parseable STATUS_UPDATE
// for task in the log at path: v1's only way to read current state, a parse
// of every line. It also returns the number of lines scanned and the time the
// scan took, file open included. Corrupted lines are skipped, as v1's readers
// skipped them, so a lost update silently yields an older status. With no
// update for task the error wraps ErrNotFound. ScanState only reads, so it is
// safe for concurrent use.
func ScanState(path string, task string) (status string, lines int, elapsed time.Duration, err error) {
	t0 := time.Now()
	var e struct {
		Action string `json:"action"`
		Task   string `json:"task"`
		Status string `json:"status"`
	}
	found := false
	lines, _, err = eachLine(path, func(line []byte) {
		e.Action, e.Task, e.Status = "", "", ""
		if json.Unmarshal(line, &e) != nil {
			return
		}
		if e.Action == ActionStatusUpdate && e.Task == task {
			status, found = e.Status, true
		}
	})
	elapsed = time.Since(t0)
	switch {
	case err != nil:
		return "", lines, elapsed, fmt.Errorf("v1sim: scan state %s: %w", task, err)
	case !found:
		return "", lines, elapsed, fmt.Errorf("%w: %s in %s", ErrNotFound, task, path)
	}
	return status, lines, elapsed, nil
}

// QueryTimeRange returns, in log order, the parseable events of the log at
// path with from <= TS < to: v1's audit time-range query, a parse of every
// line because the log has no index. It also returns the number of lines
// scanned and the time the scan took, file open included. Corrupted lines are
// skipped. QueryTimeRange only reads, so it is safe for concurrent use.
func QueryTimeRange(path string, from, to time.Time) (events []Event, lines int, elapsed time.Duration, err error) {
	t0 := time.Now()
	lines, _, err = eachLine(path, func(line []byte) {
		var e Event
		if json.Unmarshal(line, &e) != nil {
			return
		}
		if !e.TS.Before(from) && e.TS.Before(to) {
			events = append(events, e)
		}
	})
	elapsed = time.Since(t0)
	if err != nil {
		return nil, lines, elapsed, fmt.Errorf("v1sim: query time range: %w", err)
	}
	return events, lines, elapsed, nil
}

// eachLine calls fn with every line of the file at path, without its
// newline, including a final line with no newline. The slice is valid only
// during the call. Lines of any length are read whole: spliced v1 lines can
// be longer than any buffer chosen up front. It returns the number of lines
// and bytes read.
func eachLine(path string, fn func(line []byte)) (lines int, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()

	r := bufio.NewReaderSize(f, 64<<10)
	var long []byte // a line longer than r's buffer, assembled
	for {
		chunk, err := r.ReadSlice('\n')
		size += int64(len(chunk))
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, chunk...)
			continue
		}
		line := chunk
		if len(long) > 0 {
			long = append(long, chunk...)
			line, long = long, long[:0]
		}
		if len(line) > 0 {
			lines++
			fn(bytes.TrimSuffix(line, []byte{'\n'}))
		}
		switch {
		case err == io.EOF:
			return lines, size, nil
		case err != nil:
			return lines, size, err
		}
	}
}
