package v1sim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2025, 9, 6, 12, 0, 0, 0, time.UTC)

// line encodes e as one log line without its newline.
func line(t testing.TB, e Event) string {
	t.Helper()
	b, err := json.Marshal(e)
	require.NoError(t, err)
	return string(b)
}

// writeLog writes a log made of lines and returns its path. With trailing
// false the last line has no newline.
func writeLog(t testing.TB, trailing bool, lines ...string) string {
	t.Helper()
	s := strings.Join(lines, "\n")
	if trailing {
		s += "\n"
	}
	path := filepath.Join(t.TempDir(), LogName)
	require.NoError(t, os.WriteFile(path, []byte(s), 0o644))
	return path
}

func TestVerify_CountsEveryKindOfLine(t *testing.T) {
	cfg := Config{Dir: "unused", Writers: 2, EventsPerWriter: 3, PayloadBytes: 1}
	wrongTask := newEvent(1, 0, "x", t0)
	wrongTask.Task = "ADR-999"
	path := writeLog(t, false,
		line(t, newEvent(0, 0, "x", t0)),
		line(t, newEvent(0, 1, "x", t0)),
		line(t, newEvent(0, 1, "x", t0.Add(time.Second))), // duplicate, new ts
		`{"ts":"2025-09-06T12:00:00Z","action":"TASK_`,    // torn
		`{"action":"TASK_ACK"}`,                           // no writer or n
		line(t, newEvent(2, 0, "x", t0)),                  // writer out of range
		line(t, wrongTask),                                // fields of another event
		`42`,                                              // JSON, not an object
		line(t, newEvent(1, 1, "x", t0)),                  // no newline
	)
	in, err := Verify(path, cfg)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, Integrity{
		Expected:   6,
		Lines:      9,
		Bytes:      fi.Size(),
		Parsed:     7,
		Corrupted:  2,
		Spliced:    3,
		Duplicated: 1,
		Lost:       3, // (0,2), (1,0), (1,2)
	}, in)
	assert.InDelta(t, 0.5, in.LossRate(), 1e-9)
}

func TestVerify_LinesLongerThanReadBuffer(t *testing.T) {
	pad := strings.Repeat("x", 200_000)
	cfg := Config{Dir: "unused", Writers: 1, EventsPerWriter: 3, PayloadBytes: len(pad)}
	path := writeLog(t, true,
		line(t, newEvent(0, 0, pad, t0)),
		line(t, newEvent(0, 1, pad, t0)),
		`{}`, // short after long: the assembly buffer must reset
		line(t, newEvent(0, 2, pad, t0)),
	)
	in, err := Verify(path, cfg)
	require.NoError(t, err)
	assert.Equal(t, 4, in.Lines)
	assert.Equal(t, 4, in.Parsed)
	assert.Equal(t, 1, in.Spliced)
	assert.Zero(t, in.Lost)
}

func TestVerify_EmptyLog(t *testing.T) {
	in, err := Verify(writeLog(t, false), Config{Dir: "unused", Writers: 1, EventsPerWriter: 2})
	require.NoError(t, err)
	assert.Equal(t, Integrity{Expected: 2, Lost: 2}, in)
	assert.InDelta(t, 1.0, in.LossRate(), 1e-9)
}

func TestVerify_Errors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		path    string
		cfg     Config
		wantErr error
	}{
		{name: "invalid config", path: filepath.Join(dir, LogName), cfg: Config{}, wantErr: ErrInvalidConfig},
		{name: "missing log", path: filepath.Join(dir, "missing"), cfg: Config{Dir: dir}, wantErr: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(tt.path, tt.cfg)
			require.ErrorIs(t, err, tt.wantErr)
		})
	}

	// A directory opens but fails on read: the error is not swallowed.
	_, err := Verify(dir, Config{Dir: dir})
	require.Error(t, err)
}

func TestIntegrity_LossRate_NothingExpected(t *testing.T) {
	assert.Zero(t, Integrity{}.LossRate())
}
