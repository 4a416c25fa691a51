package bus

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServerLogger_Levels(t *testing.T) {
	var buf bytes.Buffer
	l := &serverLogger{log: zerolog.New(&buf).Level(zerolog.TraceLevel)}
	l.Noticef("notice %d", 1)
	l.Warnf("warn %d", 2)
	l.Errorf("error %d", 3)
	l.Debugf("debug %d", 4)
	l.Tracef("trace %d", 5)
	require.NoError(t, l.fatalErr())
	l.Fatalf("fatal %d", 6)
	l.Fatalf("second fatal")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 7)
	for i, want := range []string{`"level":"debug","message":"notice 1"`, `"level":"warn","message":"warn 2"`,
		`"level":"error","message":"error 3"`, `"level":"debug","message":"debug 4"`, `"level":"trace","message":"trace 5"`,
		`"level":"error","fatal":true,"message":"fatal 6"`} {
		assert.Contains(t, lines[i], want)
	}
	assert.EqualError(t, l.fatalErr(), "fatal 6", "the first fatal is kept")
}
