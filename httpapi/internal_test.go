package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/auth"
	"github.com/codi2/codi2/subjects"
)

func TestStatusOf(t *testing.T) {
	tests := []struct {
		code string
		want int
	}{
		{"400", 400}, {"404", 404}, {"500", 500}, {"503", 503}, {"504", 504},
		{"200", http.StatusBadGateway}, {"x", http.StatusBadGateway}, {"600", http.StatusBadGateway},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, statusOf(tt.code), tt.code)
	}
}

func TestNATSFailure(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nats.ErrNoResponders, http.StatusServiceUnavailable},
		{context.DeadlineExceeded, http.StatusGatewayTimeout},
		{nats.ErrTimeout, http.StatusGatewayTimeout},
		{nats.ErrConnectionClosed, http.StatusBadGateway},
	}
	for _, tt := range tests {
		status, text := natsFailure("codi.x", tt.err)
		assert.Equal(t, tt.want, status, tt.err.Error())
		assert.Contains(t, text, "codi.x")
	}
}

func TestNew_NeedsConnection(t *testing.T) {
	_, err := New(Config{})
	require.ErrorIs(t, err, ErrConfig)
}

func TestParseFeedSubjects(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string
	}{
		{"default", "", feedSubjects, ""},
		{"one kind", "codi.state.evt.task.>", []string{"codi.state.evt.task.>"}, ""},
		{"several", "codi.state.committed, codi.msg.*.agent-1.>", []string{"codi.state.committed", "codi.msg.*.agent-1.>"}, ""},
		{"exact event", "codi.state.evt.task.T-1", []string{"codi.state.evt.task.T-1"}, ""},
		{"audit log", "codi.audit.log.>", nil, "not carried"},
		{"too wide", "codi.state.>", nil, "not carried"},
		{"star for a literal", "codi.*.committed", nil, "not carried"},
		{"empty token", "codi..msg", nil, "subjects"},
		{"inner >", "codi.msg.>.x", nil, "last token"},
		{"bad escape", "codi.state.evt.task.a%zz", nil, "subjects"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFeedSubjects(tt.in)
			if tt.wantErr != "" {
				require.ErrorIs(t, err, ErrBadParam)
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// FuzzParseFeedSubjects checks the feed's subject filter against
// nats-server: every accepted subject is a valid subscription subject and
// a subset of one of the feed's subjects.
func FuzzParseFeedSubjects(f *testing.F) {
	for _, s := range []string{"", "codi.state.evt.>", "codi.msg.*.a.>", "codi.state.committed,codi.audit.committed", "codi.>", "codi.msg.>.x", "a b", "codi.state.evt.task.a%2Eb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, param string) {
		got, err := parseFeedSubjects(param)
		if err != nil {
			if !errors.Is(err, ErrBadParam) {
				t.Fatalf("error %v does not wrap ErrBadParam", err)
			}
			return
		}
		for _, s := range got {
			if !server.IsValidSubject(s) {
				t.Fatalf("accepted %q, which nats-server refuses", s)
			}
			ok := false
			for _, fs := range feedSubjects {
				ok = ok || server.SubjectMatchesFilter(s, fs)
			}
			if !ok {
				t.Fatalf("accepted %q outside %s", s, strings.Join(feedSubjects, ", "))
			}
		}
	})
}

// FuzzCovers cross-checks covers against nats-server's subset match.
func FuzzCovers(f *testing.F) {
	for _, p := range [][2]string{{"codi.msg.>", "codi.msg.a.b.c"}, {"codi.msg.>", "codi.msg.>"}, {"codi.msg.>", "codi.>"}, {"a.*", "a.b"}, {"a.*", "a.*"}, {"a.b", "a.*"}, {"a.*.c", "a.>"}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, pattern, sub string) {
		// nats-server reads a token by its first byte ("*0" as "*"); the
		// contract's tokens never hold '*' or '>' (subjects.ValidToken).
		if !server.IsValidSubject(pattern) || !server.IsValidSubject(sub) || oddWildcard(pattern) || oddWildcard(sub) {
			return
		}
		if got, want := covers(pattern, sub), server.SubjectMatchesFilter(sub, pattern); got != want {
			t.Fatalf("covers(%q, %q) = %v, nats-server says %v", pattern, sub, got, want)
		}
	})
}

// oddWildcard reports a token that holds '*' or '>' without being one.
func oddWildcard(subject string) bool {
	for _, tok := range strings.Split(subject, ".") {
		if tok != "*" && tok != ">" && strings.ContainsAny(tok, "*>") {
			return true
		}
	}
	return false
}

// FuzzQueryBodies checks the parameters-to-request translation of
// /v1/audit and the state lists on any query string: an accepted one
// gives a JSON object of known members and types, taken from the
// parameters as given; a refused one wraps ErrBadParam.
func FuzzQueryBodies(f *testing.F) {
	for _, s := range []string{"", "from=-1h&to=now", "limit=10&after_seq=3", "newest_first=true", "limit=-1", "limit=1&limit=2", "x=1", "source=a%20b", "prefix=a&after=b&limit=5", "limit=99999999999999999999", "held=true", "where=%7B%22a%22%3A1%7D", "where.status=open&where.n=1", "where.a=1&where=%7B%22a%22%3A2%7D", "where=x", "where.=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		check := func(body map[string]any, err error, known []string) {
			if err != nil {
				if !errors.Is(err, ErrBadParam) {
					t.Fatalf("%q: error %v does not wrap ErrBadParam", raw, err)
				}
				return
			}
			if _, err := json.Marshal(body); err != nil {
				t.Fatalf("%q: body does not encode: %v", raw, err)
			}
			for k, v := range body {
				if known != nil && !slices.Contains(known, k) {
					t.Fatalf("%q: unknown member %q accepted", raw, k)
				}
				if w, ok := v.(map[string]json.RawMessage); ok && k == "where" {
					// From where={…} and where.FIELD=VALUE, one value each.
					for f, fv := range w {
						if !json.Valid(fv) {
							t.Fatalf("%q: where member %q is not JSON: %s", raw, f, fv)
						}
						if len(q["where."+f]) != 1 && len(q["where"]) != 1 {
							t.Fatalf("%q: where member %q from no parameter", raw, f)
						}
					}
					continue
				}
				if len(q[k]) != 1 {
					t.Fatalf("%q: member %q from %d values", raw, k, len(q[k]))
				}
				switch v := v.(type) {
				case string:
					if v != q[k][0] {
						t.Fatalf("%q: %s=%q, given %q", raw, k, v, q[k][0])
					}
				case uint64:
					if strconv.FormatUint(v, 10) != strings.TrimLeft(q[k][0], "0") && !(v == 0 && strings.Trim(q[k][0], "0") == "") && !strings.HasPrefix(q[k][0], "+") {
						t.Fatalf("%q: %s=%d, given %q", raw, k, v, q[k][0])
					}
				case bool:
				default:
					t.Fatalf("%q: %s has type %T", raw, k, v)
				}
			}
		}
		body, err := auditQueryBody(q)
		check(body, err, auditQueryParams)
		body, err = listBody(q)
		check(body, err, nil)
	})
}

// FuzzCredsLogin feeds any bytes to the login's credentials check: it
// never panics, and only the server's observer credential gets in.
func FuzzCredsLogin(f *testing.F) {
	a, err := auth.Open(f.TempDir())
	require.NoError(f, err)
	observer, _, err := a.Add("dash", auth.RoleObserver, nil)
	require.NoError(f, err)
	agent, _, err := a.Add("agent-1", auth.RoleAgent, nil)
	require.NoError(f, err)
	f.Add(observer)
	f.Add(agent)
	f.Add([]byte("-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n"))
	ca := NewCredsAuth(a)
	f.Fuzz(func(t *testing.T, creds []byte) {
		id, err := ca.Login(creds)
		if err != nil {
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("error %v does not wrap ErrUnauthorized", err)
			}
			return
		}
		if id.ID != "dash" || id.Role != auth.RoleObserver || !ca.Valid(id) {
			t.Fatalf("let in %+v", id)
		}
	})
}

func TestWatermarks_LatestAtMostEvery100ms(t *testing.T) {
	rec := httptest.NewRecorder()
	wm := newWatermarks(rec, false)
	defer wm.stop()
	at := time.Unix(1000, 0)
	msg := func(subj string, seq int) *nats.Msg {
		return &nats.Msg{Subject: subj, Data: []byte(`{"stream_seq":` + strconv.Itoa(seq) + `}`)}
	}
	assert.False(t, wm.hold(msg("codi.state.evt.task.x", 1), at), "events are never held")
	assert.False(t, wm.hold(msg(subjects.AuditCommitted, 1), at))
	assert.Nil(t, wm.due())
	assert.True(t, wm.hold(msg(subjects.AuditCommitted, 2), at.Add(10*time.Millisecond)))
	assert.True(t, wm.hold(msg(subjects.AuditCommitted, 3), at.Add(20*time.Millisecond)))
	assert.False(t, wm.hold(msg(subjects.StateCommitted, 7), at.Add(20*time.Millisecond)), "each subject on its own")
	require.NotNil(t, wm.due())
	<-wm.due()
	wm.flush(at.Add(100 * time.Millisecond))
	assert.Equal(t, "event: audit-committed\ndata: ", rec.Body.String()[:len("event: audit-committed\ndata: ")])
	assert.Contains(t, rec.Body.String(), `"data":{"stream_seq":3}`)
	assert.NotContains(t, rec.Body.String(), `"data":{"stream_seq":2}`)
	assert.Nil(t, wm.due())
	// Past the interval the next one goes at once.
	assert.False(t, wm.hold(msg(subjects.AuditCommitted, 4), at.Add(250*time.Millisecond)))
}
