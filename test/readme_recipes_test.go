package test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recipe returns the shell block that follows "<!-- recipe: name -->" in
// the README, exactly as written there.
func recipe(t *testing.T, name string) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	require.NoError(t, err)
	re := regexp.MustCompile("(?s)<!-- recipe: " + regexp.QuoteMeta(name) + " -->\n```sh\n(.*?)```")
	m := re.FindSubmatch(readme)
	require.NotNil(t, m, "README has no recipe %q", name)
	return string(m[1])
}

// natsCLI finds the nats CLI (.ci/run installs it), or skips.
func natsCLI(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("nats")
	if err != nil {
		gobin := filepath.Join(os.Getenv("HOME"), "go", "bin", "nats")
		if out, gerr := exec.Command("go", "env", "GOPATH").Output(); gerr == nil {
			gobin = filepath.Join(strings.TrimSpace(string(out)), "bin", "nats")
		}
		if _, serr := os.Stat(gobin); serr != nil {
			t.Skip("the nats CLI is not installed: go install github.com/nats-io/natscli/nats@v0.5.0 (.ci/run does)")
		}
		path = gobin
	}
	return path
}

// runRecipe runs a README recipe with sh against the server at url, the
// nats CLI first on PATH, and returns what it printed on stdout.
func runRecipe(t *testing.T, name, url string) string {
	t.Helper()
	script := recipe(t, name)
	cmd := exec.Command("sh", "-eu", "-c", script)
	cmd.Env = append(os.Environ(), "NATS_URL="+url,
		"PATH="+filepath.Dir(natsCLI(t))+string(os.PathListSeparator)+os.Getenv("PATH"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "recipe %s:\n%s\n%s%s", name, script, out, stderr.String())
	return string(out)
}

// The README's nats CLI catch-up recipe, as written: it creates the same
// consumer Receive makes, prints each pending message once and leaves
// nothing pending; run again it prints nothing; Receive then goes on from
// where the CLI left off.
func TestREADME_Recipe_InboxCatchUp(t *testing.T) {
	natsCLI(t)
	srv := startCodi2(t)
	nc := connect(t, srv.URL, "orchestrator")
	orch, err := bus.NewAgent("orchestrator", nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, body := range []string{`{"task":"ADR-028"}`, `{"task":"ADR-029"}`} {
		_, err := orch.Send(ctx, "agent-1", "task.assign", []byte(body))
		require.NoError(t, err)
	}
	_, err = orch.Broadcast(ctx, "standup", []byte("hello all"))
	require.NoError(t, err)
	_, err = orch.Send(ctx, "agent-2", "task.assign", []byte("not for agent-1"))
	require.NoError(t, err)

	out := runRecipe(t, "inbox", srv.URL)
	assert.Equal(t, []string{`{"task":"ADR-028"}`, `{"task":"ADR-029"}`, "hello all"}, nonEmptyLines(out), out)
	assert.Empty(t, nonEmptyLines(runRecipe(t, "inbox", srv.URL)), "nothing twice")

	_, err = orch.Send(ctx, "agent-1", "task.assign", []byte("after the CLI"))
	require.NoError(t, err)
	a1, err := bus.NewAgent("agent-1", connect(t, srv.URL, "agent-1"))
	require.NoError(t, err)
	var got []string
	require.NoError(t, a1.Receive(ctx, bus.ReceiveConfig{UntilIdle: true}, func(_ context.Context, m bus.Message) error {
		got = append(got, string(m.Data))
		return nil
	}))
	assert.Equal(t, []string{"after the CLI"}, got, "Receive shares the CLI's consumer")
}

// The README's recipe for reading a command's outcome, as written.
func TestREADME_Recipe_CommandOutcome(t *testing.T) {
	natsCLI(t)
	srv := startCodi2(t)
	out := runRecipe(t, "outcome", srv.URL)
	lines := nonEmptyLines(out)
	require.Len(t, lines, 1, out)
	var rec struct {
		Kind, ID string
		Rev, Seq uint64
		Fields   map[string]string
	}
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec), out)
	assert.Equal(t, "T-1", rec.ID)
	assert.Equal(t, uint64(1), rec.Rev)
	assert.Equal(t, uint64(1), rec.Seq, "the record's seq is the command's PubAck sequence")
	assert.Equal(t, "open", rec.Fields["status"])
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}
