package bus

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestStorageFaults_Observe(t *testing.T) {
	f := newStorageFaults()
	f.observe("JetStream failed to store a msg on stream '$G > CODI_AUDIT': no space left on device")
	assert.False(t, f.any(), "only the file store's write error line counts")
	f.observe("Filestore [CODI_AUDIT] Critical write error: write x/1.blk: no space left on device")
	f.observe("Filestore [CODI_AUDIT] Critical write error: a later one")
	f.observe("Filestore [CODI_MSG] Critical write error: disk gone")
	assert.True(t, f.any())
	assert.Equal(t, []string{
		"stream CODI_AUDIT cannot write (write x/1.blk: no space left on device); it is reloaded once the disk has 4 MiB free",
		"stream CODI_MSG cannot write (disk gone); it is reloaded once the disk has 4 MiB free",
	}, f.problems(), "the first error of each stream, sorted")
	f.clear()
	assert.Empty(t, f.problems())
}

// FuzzStorageFaults_Observe feeds nats-server log lines to observe: it
// never panics, and records a fault exactly for the file store's write
// error line, under the stream named in it.
func FuzzStorageFaults_Observe(f *testing.F) {
	for _, s := range []string{
		"Filestore [CODI_AUDIT] Critical write error: write /d/1.blk: no space left on device",
		"Filestore [] Critical write error: x",
		"Filestore [A]] Critical write error: x",
		"Filestore [\n] Critical write error: ",
		"Filestore [A B] Critical write error: x",
		"JetStream stream '$G > CODI_AUDIT' critical write error: x",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		fs := newStorageFaults()
		fs.observe(line)
		name, _, _ := strings.Cut(strings.TrimPrefix(line, "Filestore ["), "]")
		want := strings.HasPrefix(line, "Filestore [") && strings.Contains(line, "] Critical write error: ") &&
			!strings.Contains(line, "\n") && name != "" && !strings.ContainsAny(name, " \t\n\f\r") // the \s of writeErrRE
		if fs.any() && !want {
			t.Fatalf("recorded a fault for %q", line)
		}
		if fs.any() {
			for _, p := range fs.problems() {
				if !strings.HasPrefix(p, "stream ") {
					t.Fatalf("problem %q", p)
				}
			}
		}
	})
}
