package audit

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/subjects"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Events whose subject the contract does not allow are acknowledged by the
// stream, so they are kept, flagged in the record, counted in the status and
// logged (issue 12, input 4).
func TestService_Run_FlagsBadSubjects(t *testing.T) {
	var logs syncBuffer
	h := newHarnessWith(t, Config{}, kvtest.NewBolt(t), zerolog.New(&logs).Level(zerolog.InfoLevel))
	long := strings.Repeat("s", 300)
	tests := []struct {
		name, subject    string
		source, category string
		wantFlags        []string
	}{
		{"good", "codi.audit.log.agent-1.file.write", "agent-1", "file", nil},
		{"300-byte source", "codi.audit.log." + long + ".file", long, "file", []string{FlagBadSource}},
		{"bad escape", "codi.audit.log.x%ZZ.file", "x%ZZ", "file", []string{FlagBadSource}},
		{"lower-case escape", "codi.audit.log.agent-1.a%2eb", "agent-1", "a%2eb", []string{FlagBadCategory}},
		{"no category", "codi.audit.log.agent-2", "agent-2", "", []string{FlagNoCategory}},
		{"bad later token", "codi.audit.log.agent-1.file.%61", "agent-1", "file", []string{FlagBadToken}},
		{"two problems", "codi.audit.log.%zz", "%zz", "", []string{FlagBadSource, FlagNoCategory}},
	}
	var last uint64
	for _, tt := range tests {
		ack, err := h.js.Publish(context.Background(), tt.subject, []byte(`{"x":1}`))
		require.NoError(t, err, tt.subject)
		last = ack.Sequence
	}
	h.waitCommitted(last)
	recs := h.wholeLog(len(tests))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := recs[i]
			assert.Equal(t, tt.subject, r.Subject)
			assert.Equal(t, tt.source, r.Source)
			assert.Equal(t, tt.category, r.Category)
			assert.Equal(t, tt.wantFlags, r.Flags)
			if tt.wantFlags == nil {
				assert.NotContains(t, string(r.Raw), `"flags"`)
			}
			back, err := ParseRecord(r.Raw)
			require.NoError(t, err)
			assert.Equal(t, r.Flags, back.Flags)
		})
	}
	st, err := h.client.Status(context.Background())
	require.NoError(t, err)
	assert.Equal(t, uint64(len(tests)-1), st.Flagged)
	assert.True(t, h.verify(VerifyRequest{}).OK)
	// A flagged record can be selected by what it carries.
	assert.Len(t, h.all(Query{Source: long}), 1)
	assert.Len(t, h.all(Query{Source: "x%ZZ"}), 1)
	assert.Contains(t, logs.String(), `"message":"kept audit events whose subject the contract does not allow; their records are flagged"`)
	assert.Contains(t, logs.String(), `"level":"info"`)

	// The count survives a restart.
	require.NoError(t, h.stop())
	h.start()
	assert.Equal(t, uint64(len(tests)-1), h.svc.Status().Flagged)
}

func TestRecord_Parse_Flags(t *testing.T) {
	body := encodeFlaggedBody("codi.audit.log.a", "a", "", []string{FlagNoCategory, FlagBadToken}, "id", []byte(`{}`))
	raw, _ := encodeRecord(1, 0, body, GenesisPrev)
	r, ok := parseCanonical(raw)
	require.True(t, ok, "%s", raw)
	assert.Equal(t, []string{FlagNoCategory, FlagBadToken}, r.Flags)
	assert.Equal(t, "id", r.MsgID)
	for _, bad := range []string{`,"flags":[1]`, `,"flags":["a"`, `,"flags":["a",]`} {
		in := bytes.Replace(raw, []byte(`,"flags":["no_category","bad_token"]`), []byte(bad), 1)
		_, ok := parseCanonical(in)
		assert.False(t, ok, bad)
	}
}

// Events read from the stream because they were not delivered are logged
// as one line with their range, not one line each (issue 12, input 9).
func TestService_AppendEvents_HolesLoggedOnce(t *testing.T) {
	h := newHarness(t, Config{})
	require.NoError(t, h.stop())
	var last uint64
	for range 40 {
		ack, err := h.js.Publish(context.Background(), "codi.audit.log.agent-1.file", []byte(`{}`))
		require.NoError(t, err)
		last = ack.Sequence
	}
	var logs syncBuffer
	svc, err := New(Config{}, h.nc, h.store, zerolog.New(&logs))
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, svc.load(ctx))
	svc.stream, err = h.js.Stream(ctx, "CODI_AUDIT")
	require.NoError(t, err)
	raw, err := svc.stream.GetMsg(ctx, last)
	require.NoError(t, err)
	ev := newEvent(raw.Sequence, raw.Time, raw.Subject, raw.Header, raw.Data)
	require.NoError(t, svc.appendEvents(ctx, []*event{&ev}))
	assert.Equal(t, last, svc.Status().StreamSeq)
	assert.Equal(t, uint64(40), svc.Status().Count)
	assert.Equal(t, 1, strings.Count(logs.String(), "filled holes"), logs.String())
	assert.Contains(t, logs.String(), `"count":39,"first_stream_seq":1,"last_stream_seq":39`)
}

func TestSubjectFlags(t *testing.T) {
	tests := []struct {
		subject string
		want    []string
	}{
		{"codi.audit.log.a.b", nil},
		{"codi.audit.log.a.b.c.d", nil},
		{"codi.audit.log.a", []string{FlagNoCategory}},
		{"codi.audit.log.a.", []string{FlagBadCategory}},
		{"codi.audit.log.a.b.", []string{FlagBadToken}},
		{"codi.audit.log.a.b.c.%2e", []string{FlagBadToken}},
		{"codi.audit.log..b", []string{FlagBadSource}},
	}
	for _, tt := range tests {
		source, category := splitSubject(tt.subject)
		got, detail := subjectFlags(tt.subject, source, category)
		assert.Equal(t, tt.want, got, tt.subject)
		assert.Equal(t, tt.want == nil, detail == "", tt.subject)
	}
	assert.Zero(t, testing.AllocsPerRun(10, func() { subjectFlags("codi.audit.log.agent-1.file.write", "agent-1", "file") }))
}

// FuzzPlainTail: a subject plainTail passes is one the full checks flag
// nothing in (the shortcut never hides a flag).
func FuzzPlainTail(f *testing.F) {
	for _, s := range []string{"codi.audit.log.a.b", "codi.audit.log.a", "codi.audit.log.a.b.c%2Ed", "codi.audit.log.a.\x7f", "x.y.z.a.b.c", "codi.audit.log.é.b", "codi.audit.log.a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subject string) {
		if !plainTail(subject) {
			return
		}
		source, category := splitSubject(subject)
		if flags, detail := checkSubject(subject, source, category); flags != nil || detail != "" {
			t.Fatalf("plainTail(%q) but flags %v: %s", subject, flags, detail)
		}
	})
}

// Tokens of printable ASCII take the shortcut; anything else goes
// through the full checks, which still flag what they flagged.
func TestPlainTail(t *testing.T) {
	for subject, want := range map[string]bool{
		"codi.audit.log.agent-1.file":                                          true,
		"codi.audit.log.agent-1.file.write":                                    true,
		"codi.audit.log.agent-1":                                               false,
		"codi.audit.log.agent-1.":                                              false,
		"codi.audit.log.agent-1.file..x":                                       false,
		"codi.audit.log.agent-1.a%2Eb":                                         false, // valid, checked in full
		"codi.audit.log.agent-1.caf\u00e9":                                     false, // valid, checked in full
		"codi.audit.log.agent-1.a*":                                            false,
		"codi.audit.log.agent-1.a>":                                            false,
		"codi.audit.log.agent-1.a\x7f":                                         false,
		"codi.audit.log.agent-1.a b":                                           false,
		"codi.audit.log." + strings.Repeat("s", subjects.MaxTokenLen+1) + ".c": false,
	} {
		assert.Equal(t, want, plainTail(subject), subject)
	}
}
