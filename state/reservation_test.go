package state_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

const project = "git-0123456789ab"

func TestReserve_OverlapConflict(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	ctx := ctxT(t)
	a2, a3 := e.client("agent-2"), e.client("agent-3")

	recs, err := a2.Reserve(ctx, project, []string{"src/**", "docs/*.md"}, state.ReserveOptions{TTL: time.Minute, Reason: "ADR-028"})
	require.NoError(t, err)
	require.Len(t, recs, 2)
	assert.Equal(t, uint64(1), recs[0].Rev)
	var pat string
	require.NoError(t, recs[0].Field("pattern", &pat))
	assert.Equal(t, "src/**", pat)

	// agent-3 loses, and learns who holds what, until when.
	_, err = a3.Reserve(ctx, project, []string{"README.md", "src/main.go"}, state.ReserveOptions{TTL: time.Minute})
	var ce *state.ConflictError
	require.ErrorAs(t, err, &ce)
	require.NotNil(t, ce.Event.Overlap)
	assert.Equal(t, "agent-2", ce.Event.Overlap.Holder)
	assert.Equal(t, "src/**", ce.Event.Overlap.Pattern)
	assert.Equal(t, "src/main.go", ce.Event.Overlap.Path)
	assert.Equal(t, recs[0].ExpiresAt, ce.Event.Overlap.ExpiresAt)
	assert.Equal(t, "agent-2", ce.Event.Holder)
	assert.Contains(t, err.Error(), "src/main.go overlaps src/** reserved by agent-2")
	// All or none: README.md was not kept.
	held, err := a3.Reservations(ctx, project, "agent-3", "")
	require.NoError(t, err)
	assert.Empty(t, held)

	// No overlap, another project, or both shared: granted.
	_, err = a3.Reserve(ctx, project, []string{"docs/guide/*.md", "test/**"}, state.ReserveOptions{TTL: time.Minute})
	require.NoError(t, err, "docs/*.md does not match docs/guide/x.md")
	_, err = a3.Reserve(ctx, "other-project", []string{"src/**"}, state.ReserveOptions{TTL: time.Minute})
	require.NoError(t, err)
	_, err = a2.Reserve(ctx, project, []string{"lib/*.go"}, state.ReserveOptions{TTL: time.Minute, Shared: true})
	require.NoError(t, err)
	_, err = a3.Reserve(ctx, project, []string{"lib/a.go"}, state.ReserveOptions{TTL: time.Minute, Shared: true})
	require.NoError(t, err, "shared reservations do not conflict")
	_, err = a3.Reserve(ctx, project, []string{"lib/b.go"}, state.ReserveOptions{TTL: time.Minute})
	require.ErrorIs(t, err, state.ErrConflict, "an exclusive one does conflict with a shared one")

	// An agent's own reservations never conflict with each other, and a
	// second reserve of the same pattern renews it.
	again, err := a2.Reserve(ctx, project, []string{"src/**", "src/main.go"}, state.ReserveOptions{TTL: time.Hour})
	require.NoError(t, err)
	assert.Equal(t, uint64(2), again[0].Rev)

	// Listing by path, by holder.
	covering, err := a3.Reservations(ctx, project, "", "src/main.go")
	require.NoError(t, err)
	require.Len(t, covering, 2)
	for _, r := range covering {
		assert.Equal(t, "agent-2", r.Holder)
	}
	mine, err := a2.Reservations(ctx, project, "agent-2", "")
	require.NoError(t, err)
	assert.Len(t, mine, 4)

	// Unreserve exactly what was reserved; a pattern not held is not found.
	require.NoError(t, a2.Unreserve(ctx, project, []string{"src/**", "src/main.go"}))
	err = a2.Unreserve(ctx, project, []string{"docs/*.md", "src/**"})
	require.ErrorIs(t, err, state.ErrNotFound)
	assert.Contains(t, err.Error(), `no reservation of "src/**"`)
	_, err = a3.Reserve(ctx, project, []string{"src/main.go"}, state.ReserveOptions{TTL: time.Minute})
	require.NoError(t, err)
	done, err := a2.UnreserveAll(ctx, project)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"docs/*.md", "lib/*.go"}, done)
}

// An expired reservation guards nothing, even before the sweep removes it.
func TestReserve_ExpiredDoesNotConflict(t *testing.T) {
	e := newEnv(t)
	cfg := fastConfig()
	cfg.LeaseSweepInterval = time.Hour
	e.start(cfg)
	ctx := ctxT(t)
	_, err := e.client("agent-2").Reserve(ctx, project, []string{"src/**"}, state.ReserveOptions{TTL: 50 * time.Millisecond})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := e.client("agent-3").Reserve(ctx, project, []string{"src/a.go"}, state.ReserveOptions{TTL: time.Minute})
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
}

// Reservation records written by hand are checked like the client's.
func TestReserve_BadRecords(t *testing.T) {
	e := newEnv(t)
	w := e.watchEvents()
	e.start(fastConfig())
	id := func(holder, pattern string) string {
		s, err := state.ReservationID(project, holder, pattern)
		require.NoError(t, err)
		return s
	}
	tests := []struct {
		name, id, actor, fields, detail string
	}{
		{"holder is not the actor", id("agent-2", "a"), "agent-3", `{"holder":"agent-2","pattern":"a","project":"` + project + `"}`, `holder "agent-2" is not the actor "agent-3"`},
		{"bad project", id("agent-2", "a"), "agent-2", `{"holder":"agent-2","pattern":"a","project":"a.b"}`, `project "a.b"`},
		{"bad pattern", id("agent-2", "[a"), "agent-2", `{"holder":"agent-2","pattern":"[a","project":"` + project + `"}`, "pattern"},
		{"pattern not normalized", id("agent-2", "./a"), "agent-2", `{"holder":"agent-2","pattern":"./a","project":"` + project + `"}`, "not normalized"},
		{"id does not match", id("agent-2", "b"), "agent-2", `{"holder":"agent-2","pattern":"a","project":"` + project + `"}`, "does not match its fields"},
		{"fields of the wrong type", id("agent-2", "a"), "agent-2", `{"holder":"agent-2","pattern":"a","project":"` + project + `","shared":"true"}`,
			`reservation field shared must be true or false, not "true"`},
		{"fields missing", id("agent-2", "a"), "agent-2", `{"holder":"agent-2"}`, "a reservation needs the fields holder, pattern and project (codi2 reserve writes them); pattern is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seq := e.publish(cmdSubject(t, state.KindReservation, tt.id, tt.actor), `{"op":"put","fields":`+tt.fields+`}`)
			ev := w.waitSeq(t, seq)
			assert.Equal(t, state.ReasonBadRequest, ev.ev.Reason)
			assert.Contains(t, ev.ev.Detail, tt.detail)
		})
	}
	_, err := e.client("agent-2").Reserve(ctxT(t), "a b", []string{"a"}, state.ReserveOptions{TTL: time.Minute})
	require.ErrorIs(t, err, state.ErrBadRequest)
	_, err = e.client("agent-2").Reserve(ctxT(t), project, []string{"./a"}, state.ReserveOptions{TTL: time.Minute})
	require.ErrorIs(t, err, state.ErrBadRequest)
	_, err = e.client("agent-2").Reserve(ctxT(t), project, []string{"a"}, state.ReserveOptions{})
	require.ErrorIs(t, err, state.ErrBadRequest)

	// Another agent cannot delete or overwrite a reservation it does not hold.
	recs, err := e.client("agent-2").Reserve(ctxT(t), project, []string{"x/**"}, state.ReserveOptions{TTL: time.Minute})
	require.NoError(t, err)
	seq := e.publish(cmdSubject(t, state.KindReservation, recs[0].ID, "agent-3"), `{"op":"delete"}`)
	ev := w.waitSeq(t, seq)
	assert.Equal(t, state.ReasonBadRequest, ev.ev.Reason)
	assert.Contains(t, ev.ev.Detail, "belongs to agent-2")
	// An admin (a codi- actor) can.
	seq = e.publish(cmdSubject(t, state.KindReservation, recs[0].ID, "codi-admin"), `{"op":"delete"}`)
	assert.Equal(t, state.StatusApplied, w.waitSeq(t, seq).ev.Status)
}

// Five agents race for overlapping patterns, many rounds: exactly one wins
// each round, and the loser sees the winner.
func TestReserve_FiveAgentRace(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	ctx := ctxT(t)
	patterns := []string{"src/**", "src/*.go", "src/main.go", "**/main.go", "src/[lm]ain.go"}
	clients := make([]*state.Client, 5)
	for i := range clients {
		clients[i] = e.client(fmt.Sprintf("agent-%d", i+1))
	}
	rounds := 30
	if testing.Short() {
		rounds = 10
	}
	for round := range rounds {
		proj := fmt.Sprintf("race-%d", round)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []string
			losers  []*state.ConflictError
		)
		for i, c := range clients {
			wg.Go(func() {
				_, err := c.Reserve(ctx, proj, []string{patterns[(i+round)%5]}, state.ReserveOptions{TTL: time.Minute})
				mu.Lock()
				defer mu.Unlock()
				var ce *state.ConflictError
				switch {
				case err == nil:
					winners = append(winners, c.Agent())
				case errors.As(err, &ce):
					losers = append(losers, ce)
				default:
					t.Errorf("round %d: %v", round, err)
				}
			})
		}
		wg.Wait()
		require.Len(t, winners, 1, "round %d", round)
		require.Len(t, losers, 4, "round %d", round)
		for _, l := range losers {
			assert.Equal(t, winners[0], l.Event.Overlap.Holder, "round %d", round)
		}
	}
}

// A reserve whose summary is too large to carry the records (a breaker's
// input: 64 patterns with a 5,000-byte reason) still returns them.
func TestReserve_LargeSummary(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	var pats []string
	for i := range 64 {
		pats = append(pats, fmt.Sprintf("big/%d", i))
	}
	recs, err := e.client("agent-2").Reserve(ctxT(t), project, pats, state.ReserveOptions{TTL: time.Minute, Reason: strings.Repeat("r", 5000)})
	require.NoError(t, err)
	require.Len(t, recs, 64)
	for i, r := range recs {
		var p string
		require.NoError(t, r.Field("pattern", &p))
		assert.Equal(t, pats[i], p)
	}
}

func TestReservationID(t *testing.T) {
	id, err := state.ReservationID(project, "agent-2", "src/**/*.go")
	require.NoError(t, err)
	assert.Equal(t, project+"%2Eagent-2%2Esrc/%2A%2A/%2A%2Ego", id)
	require.NoError(t, subjects.ValidToken(id))
	// Agent ids with escapes stay one-to-one.
	a, _ := state.ReservationID(project, "a%2Eb", "c")
	b, _ := state.ReservationID(project, "a", "b.c")
	assert.NotEqual(t, a, b)
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'a'
	}
	_, err = state.ReservationID(project, "agent-2", string(long))
	require.ErrorIs(t, err, state.ErrBadRequest)
}

// A reservation whose overlap checks would take seconds (a breaker's input:
// two reserves of 64 star-heavy patterns held the transaction past the
// store's 5 s limit, the service failed, and failed again on every restart
// since the command stayed in the stream) is rejected as a bad request, and
// the commands behind it go on.
func TestReserve_CostlyChecksBounded(t *testing.T) {
	e := newEnv(t)
	w := e.watchEvents()
	e.start(fastConfig())
	ctx := ctxT(t)
	pats := func(format, star string) []string {
		var out []string
		for i := range 64 {
			out = append(out, fmt.Sprintf(format, i)+strings.Repeat(star, 45))
		}
		return out
	}
	_, err := e.client("agent-a").Reserve(ctx, project, pats("a%d/", "*a"), state.ReserveOptions{TTL: time.Minute})
	require.NoError(t, err)
	_, err = e.client("agent-b").Reserve(ctx, project, pats("**/b%d", "*b"), state.ReserveOptions{TTL: time.Minute})
	require.ErrorIs(t, err, state.ErrBadRequest)
	assert.Contains(t, err.Error(), "needs more than 1000000 steps: reserve fewer or simpler patterns")
	held, err := e.client("agent-b").Reservations(ctx, project, "agent-b", "")
	require.NoError(t, err)
	assert.Empty(t, held)

	// The service goes on: a plain command behind it is applied.
	seq := e.publish(cmdSubject(t, "task", "after", "agent-b"), `{"op":"put","fields":{}}`)
	assert.Equal(t, state.StatusApplied, w.waitSeq(t, seq).ev.Status)
}
