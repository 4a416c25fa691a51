package bus

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/codi2/codi2/subjects"
)

// Identity names a running codi2 instance in the answer to a probe on
// subjects.ServerInstance and in ErrAnotherInstance.
type Identity struct {
	// ID is unique to one start of one process (a NUID).
	ID string `json:"id"`
	// PID and Host name the process.
	PID  int    `json:"pid"`
	Host string `json:"host"`
	// DataDir is the instance's data directory; NATS the URL it serves or
	// uses.
	DataDir string `json:"data,omitempty"`
	NATS    string `json:"nats,omitempty"`
	// Started is when the instance started.
	Started time.Time `json:"started"`
}

// String describes the instance for an operator.
func (id Identity) String() string {
	s := fmt.Sprintf("pid %d on host %s", id.PID, id.Host)
	if id.DataDir != "" {
		s += ", data " + id.DataDir
	}
	if !id.Started.IsZero() {
		s += ", started " + id.Started.UTC().Format(time.RFC3339)
	}
	return s
}

// fill completes the fields the caller left zero.
func (id *Identity) fill() {
	if id.ID == "" {
		id.ID = nuid.Next()
	}
	if id.PID == 0 {
		id.PID = os.Getpid()
	}
	if id.Host == "" {
		id.Host, _ = os.Hostname()
	}
	if id.Started.IsZero() {
		id.Started = time.Now().UTC()
	}
}

// claimInstance makes b the instance serving the streams: it answers probes
// from other instances with its identity and, on an external NATS, probes
// for one already running. It subscribes before it probes, so two
// instances starting at the same moment both see each other and both
// refuse: never two at once.
func (b *Bus) claimInstance() error {
	b.cfg.Identity.fill()
	self := b.cfg.Identity
	me, err := json.Marshal(self)
	if err != nil {
		return fmt.Errorf("%w: identity: %v", ErrStart, err)
	}
	_, err = b.nc.Subscribe(subjects.ServerInstance, func(m *nats.Msg) {
		var asker Identity
		if json.Unmarshal(m.Data, &asker) == nil && asker.ID == self.ID {
			return // our own probe
		}
		_ = m.Respond(me)
	})
	if err != nil {
		return fmt.Errorf("%w: instance responder: %v", ErrStart, err)
	}
	if err := b.nc.Flush(); err != nil {
		return fmt.Errorf("%w: instance responder: %v", ErrStart, err)
	}
	if b.srv != nil && b.cfg.DeferListen {
		// Nobody else can be connected to a server that does not listen yet.
		return nil
	}
	inbox := nats.NewInbox()
	replies, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("%w: instance probe: %v", ErrStart, err)
	}
	defer func() { _ = replies.Unsubscribe() }()
	if err := b.nc.PublishRequest(subjects.ServerInstance, inbox, me); err != nil {
		return fmt.Errorf("%w: instance probe: %v", ErrStart, err)
	}
	deadline := time.Now().Add(b.cfg.InstanceProbeWait)
	for {
		m, err := replies.NextMsg(time.Until(deadline))
		if err != nil {
			return nil // nobody else answered in time
		}
		var other Identity
		if len(m.Data) == 0 || json.Unmarshal(m.Data, &other) != nil {
			continue // a status message, or not an instance
		}
		return fmt.Errorf("%w on %s: codi2 %s; stop it first, or point --nats-url at another NATS", ErrAnotherInstance, b.cfg.URL, other)
	}
}
