package pebblekv

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
)

// pebble's lines reach the logger with their component and level: routine
// ones at debug, background errors at error, stalls at warn; Fatalf logs
// and then panics, as pebble expects it not to return.
func TestPebbleLogger(t *testing.T) {
	var buf bytes.Buffer
	l := pebbleLogger{zerolog.New(&buf).Level(zerolog.DebugLevel)}
	l.Infof("flushed %d tables", 3)
	assert.Contains(t, buf.String(), `{"level":"debug","component":"pebble","message":"flushed 3 tables"}`)

	buf.Reset()
	ev := l.events()
	ev.BackgroundError(errors.New("disk full"))
	assert.Contains(t, buf.String(), `"level":"error"`)
	assert.Contains(t, buf.String(), `"error":"disk full"`)

	buf.Reset()
	ev.WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "memtable count limit reached"})
	assert.Contains(t, buf.String(), `"level":"warn"`)
	assert.Contains(t, buf.String(), `"reason":"memtable count limit reached"`)

	buf.Reset()
	assert.PanicsWithValue(t, fatalError{msg: "MANIFEST write failed: EIO"}, func() { l.Fatalf("MANIFEST write failed: %s", "EIO") })
	assert.Contains(t, buf.String(), `"level":"error"`)
}
