package state

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/pathglob"
	"github.com/codi2/codi2/subjects"
)

// The kinds whose records the service gives a meaning of its own. Constants,
// safe everywhere.
const (
	// KindReservation is the kind of file reservations: records whose
	// fields are a Reservation. A put or merge that leaves one live is
	// refused as a conflict when it overlaps another agent's live
	// reservation of the same project and either is exclusive; the check
	// runs in the transaction that applies it.
	KindReservation = "reservation"
	// KindAgent is the kind of presence records: agent/<id>, written only
	// by that agent (or a codi- actor), kept alive by a TTL. When one ends
	// (expiry or delete) every record bound to it is released in the same
	// transaction (Command.Bind).
	KindAgent = "agent"
	// KindTxn is the kind of multi-record commands:
	// codi.state.cmd.txn.<txid>.<actor> carries a TxnCommand; no record of
	// this kind is ever stored.
	KindTxn = "txn"
)

// Reservation is the fields of a KindReservation record, as the CLI writes
// them. Pattern is a pathglob pattern relative to the repository root, in
// normalized form; Project separates repositories sharing a server (see
// ValidProject); Holder is the reserving agent, the command's actor.
type Reservation struct {
	Holder  string `json:"holder"`
	Pattern string `json:"pattern"`
	Project string `json:"project"`
	Shared  bool   `json:"shared,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Overlap names, in a rejected reservation's event, the live reservation of
// another agent it overlaps, and a path both patterns match.
type Overlap struct {
	ID        string     `json:"id"`
	Rev       uint64     `json:"rev"`
	Holder    string     `json:"holder"`
	Pattern   string     `json:"pattern"`
	Shared    bool       `json:"shared,omitempty"`
	ExpiresAt *time.Time `json:"expires_at"`
	// Path is a path that both patterns match.
	Path string `json:"path"`
}

var projectRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ValidProject checks a project name: 1 to 64 ASCII letters, digits, '_'
// and '-', starting with a letter or digit (so that it never needs
// escaping and ends where a reservation id's first '.' is). The error
// wraps ErrBadRequest.
func ValidProject(p string) error {
	if err := checkProject(p); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return nil
}

func checkProject(p string) error {
	if !projectRE.MatchString(p) {
		return fmt.Errorf("project %q: want 1-64 of [A-Za-z0-9_-], starting with a letter or digit", truncate(p, 80))
	}
	return nil
}

// ReservationID is the id of holder's reservation of pattern in project:
// the escaping of "<project>.<holder>.<pattern>" (holder is a token and so
// holds no '.', which makes the id one-to-one). pattern must be normalized
// (pathglob.Normalize). It fails, wrapping ErrBadRequest, when the id
// would be longer than a token may be.
func ReservationID(project, holder, pattern string) (string, error) {
	id, err := reservationID(project, holder, pattern)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return id, nil
}

func reservationID(project, holder, pattern string) (string, error) {
	id := subjects.Escape(project + "." + holder + "." + pattern)
	if err := subjects.ValidToken(id); err != nil {
		return "", fmt.Errorf("reservation of %q: %w", truncate(pattern, 80), err)
	}
	return id, nil
}

// reservationOf reads and checks the fields of a reservation record written
// by actor: the holder is actor, the pattern normalized and valid, the
// project valid, and the id the one ReservationID gives. Its errors are
// the detail of a bad_request.
func reservationOf(rec Record, actor string) (Reservation, pathglob.Pattern, error) {
	var res Reservation
	for _, f := range []struct {
		name string
		dst  any
		want string
		need bool
	}{
		{"holder", &res.Holder, "a string", true}, {"pattern", &res.Pattern, "a string", true},
		{"project", &res.Project, "a string", true}, {"shared", &res.Shared, "true or false", false},
		{"reason", &res.Reason, "a string", false},
	} {
		raw, ok := rec.Fields[f.name]
		switch {
		case !ok && f.need:
			return res, pathglob.Pattern{}, fmt.Errorf("a reservation needs the fields holder, pattern and project (codi2 reserve writes them); %s is missing", f.name)
		case !ok:
			continue
		}
		if json.Unmarshal(raw, f.dst) != nil {
			return res, pathglob.Pattern{}, fmt.Errorf("reservation field %s must be %s, not %s", f.name, f.want, truncate(string(raw), 40))
		}
	}
	if res.Holder != actor && !strings.HasPrefix(actor, serviceActorPrefix) {
		return res, pathglob.Pattern{}, fmt.Errorf("reservation holder %q is not the actor %q", truncate(res.Holder, 80), actor)
	}
	if err := checkProject(res.Project); err != nil {
		return res, pathglob.Pattern{}, err
	}
	pat, err := pathglob.Compile(res.Pattern)
	if err != nil {
		return res, pathglob.Pattern{}, err
	}
	if pat.String() != res.Pattern {
		return res, pathglob.Pattern{}, fmt.Errorf("reservation pattern %q is not normalized (want %q)", truncate(res.Pattern, 80), pat.String())
	}
	id, err := reservationID(res.Project, res.Holder, res.Pattern)
	if err != nil {
		return res, pathglob.Pattern{}, err
	}
	if id != rec.ID {
		return res, pathglob.Pattern{}, fmt.Errorf("reservation id %q does not match its fields (want %q)", truncate(rec.ID, 80), id)
	}
	return res, pat, nil
}

// serviceActorPrefix starts the actor ids of codi2's own services and
// operators' admin tools; agent ids cannot start with it (bus.Issue
// refuses them), so only an admin credential can publish as one.
const serviceActorPrefix = "codi-"

// MaxCheckSteps bounds the overlap checks of one command (all operations
// of a multi-record command together), in pathglob.OverlapWithin steps
// (about a microsecond each at worst, a few nanoseconds for plain paths):
// a command that needs more is rejected as a bad request, so no command can
// hold the service's transaction for long. The count depends only on the
// patterns, so every replay decides the same. A constant.
const MaxCheckSteps = 1_000_000

// errCheckBudget is the detail of a reservation whose overlap checks went
// over MaxCheckSteps.
var errCheckBudget = fmt.Errorf("checking the reservation against the project's live reservations needs more than %d steps: reserve fewer or simpler patterns (fewer wildcards)", MaxCheckSteps)

// findOverlap looks for a live reservation of another agent in res's
// project that overlaps pat where either is exclusive, as of at, taking its
// steps from *budget (errCheckBudget when they run out). It reads every
// reservation of the project (one range read); a corrupt one is an error
// wrapping ErrCorrupt, since it could be the one that overlaps.
func findOverlap(tx kv.ReadTxn, id string, res Reservation, pat pathglob.Pattern, at time.Time, budget *int) (*Overlap, error) {
	pk := kv.Tuple{prefixState, KindReservation, subjects.Escape(res.Project + ".")}.Pack()
	begin := pk[:len(pk)-1] // the id without its terminator: a raw prefix
	end := kv.PrefixEnd(begin)
	for {
		kvs, err := tx.GetRange(begin, end, kv.RangeOptions{Limit: 256})
		if err != nil {
			return nil, err
		}
		for _, p := range kvs {
			begin = append(p.Key, 0x00)
			st, err := decodeStored(p.Key, p.Value)
			if err != nil {
				return nil, err
			}
			if st.tombstone || st.ID == id || (st.ExpiresAt != nil && !st.ExpiresAt.After(at)) {
				continue
			}
			var other Reservation
			if err := st.Field("holder", &other.Holder); err != nil || other.Holder == res.Holder {
				continue
			}
			_ = st.Field("pattern", &other.Pattern)
			_ = st.Field("shared", &other.Shared)
			if res.Shared && other.Shared {
				continue
			}
			op, err := pathglob.Compile(other.Pattern)
			if err != nil {
				continue // written before validation, or not by the CLI: it guards nothing
			}
			path, ok, err := pathglob.OverlapWithin(pat, op, budget)
			if err != nil {
				return nil, errCheckBudget
			}
			if ok {
				return &Overlap{ID: st.ID, Rev: st.Rev, Holder: other.Holder, Pattern: other.Pattern, Shared: other.Shared,
					ExpiresAt: st.ExpiresAt, Path: path}, nil
			}
		}
		if len(kvs) < 256 {
			return nil, nil
		}
	}
}
