package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/codi2/codi2/bus"
	"github.com/spf13/cobra"
)

// Message headers the send verb sets: codi2's own, beside NATS's.
const (
	HeaderThread      = "Codi-Thread"
	HeaderReplyTo     = "Codi-Reply-To"
	HeaderImportance  = "Codi-Importance"
	HeaderAckRequired = "Codi-Ack-Required"
)

var importances = map[string]bool{"low": true, "normal": true, "high": true, "urgent": true}

// Sent is send's --json output.
type Sent struct {
	To        string `json:"to"`
	Type      string `json:"type"`
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

func (e *env) sendCmd() *cobra.Command {
	var (
		id, thread, importance string
		replyTo                uint64
		ackRequired            bool
	)
	cmd := &cobra.Command{
		Use:   "send TO TYPE [DATA|-]",
		Short: "send a durable message to an agent (or all)",
		Long: `Send a durable message from --agent to agent TO (or "all"), of type TYPE
(dot-separated tokens, e.g. task.assign). DATA is the body; "-" reads it from
standard input. Once it prints, the message is stored and will be delivered.`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := e.agent()
			if err != nil {
				return err
			}
			data, err := e.readData(args, 2)
			if err != nil {
				return err
			}
			var opts []bus.SendOption
			if id != "" {
				opts = append(opts, bus.WithMsgID(id))
			}
			if thread != "" {
				opts = append(opts, bus.WithHeader(HeaderThread, thread))
			}
			if replyTo > 0 {
				opts = append(opts, bus.WithHeader(HeaderReplyTo, strconv.FormatUint(replyTo, 10)))
			}
			if importance != "" {
				if !importances[importance] {
					return usageError{fmt.Errorf("--importance %q: want low, normal, high or urgent", importance)}
				}
				opts = append(opts, bus.WithHeader(HeaderImportance, importance))
			}
			if ackRequired {
				opts = append(opts, bus.WithHeader(HeaderAckRequired, "true"))
			}
			ctx, cancel := e.ctx(cmd)
			defer cancel()
			ack, err := a.Send(ctx, args[0], args[1], data, opts...)
			if err != nil {
				return err
			}
			s := Sent{To: args[0], Type: args[1], Stream: ack.Stream, Seq: ack.Sequence, Duplicate: ack.Duplicate}
			text := fmt.Sprintf("sent %s to %s (%s seq %d)", s.Type, s.To, s.Stream, s.Seq)
			if s.Duplicate {
				text += ", a retry of a message already stored"
			}
			return e.out.emit(s, text)
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "idempotency id: a retry with the same id is stored once (Nats-Msg-Id)")
	f.StringVar(&thread, "thread", "", "conversation thread id ("+HeaderThread+" header)")
	f.Uint64Var(&replyTo, "reply-to", 0, "CODI_MSG seq of the message this answers ("+HeaderReplyTo+" header)")
	f.StringVar(&importance, "importance", "", "low, normal, high or urgent ("+HeaderImportance+" header)")
	f.BoolVar(&ackRequired, "ack-required", false, "ask the recipient to acknowledge ("+HeaderAckRequired+" header)")
	return cmd
}

// Mail is one message in inbox's --json output.
type Mail struct {
	Seq         uint64          `json:"seq"`
	Time        time.Time       `json:"time"`
	From        string          `json:"from"`
	To          string          `json:"to"`
	Type        string          `json:"type"`
	Data        json.RawMessage `json:"data,omitempty"`
	Encoding    string          `json:"encoding,omitempty"`
	Thread      string          `json:"thread,omitempty"`
	ReplyTo     uint64          `json:"reply_to,omitempty"`
	Importance  string          `json:"importance,omitempty"`
	AckRequired bool            `json:"ack_required,omitempty"`
	Problem     string          `json:"problem,omitempty"`
	// body is what Text shows: JSON as JSON, other text as it is.
	body string
}

// MailOf is the printed form of a delivered message: JSON data kept as
// JSON, other UTF-8 text as a string, anything else base64.
func MailOf(m bus.Message) Mail {
	out := Mail{Seq: m.Seq, Time: m.Time, From: m.From, To: m.To, Type: m.Type,
		Thread: m.Header.Get(HeaderThread), Importance: m.Header.Get(HeaderImportance),
		AckRequired: m.Header.Get(HeaderAckRequired) == "true"}
	out.ReplyTo, _ = strconv.ParseUint(m.Header.Get(HeaderReplyTo), 10, 64)
	switch {
	case len(m.Data) == 0:
	case json.Valid(m.Data):
		out.Data, out.body = m.Data, string(m.Data)
	case utf8.Valid(m.Data):
		out.Data, _ = json.Marshal(string(m.Data))
		out.body = string(m.Data)
	default:
		b64 := base64.StdEncoding.EncodeToString(m.Data)
		out.Data, _ = json.Marshal(b64)
		out.Encoding, out.body = "base64", "base64:"+b64
	}
	if m.Err != nil {
		out.Problem = m.Err.Error()
	}
	return out
}

// Text is the message in one line.
func (m Mail) Text() string {
	s := fmt.Sprintf("#%d %s %s -> %s %s", m.Seq, m.Time.UTC().Format(time.RFC3339), m.From, m.To, m.Type)
	if m.Importance != "" && m.Importance != "normal" {
		s += " [" + m.Importance + "]"
	}
	if m.AckRequired {
		s += " [ack required]"
	}
	if m.ReplyTo > 0 {
		s += fmt.Sprintf(" (reply to #%d)", m.ReplyTo)
	}
	if m.body != "" {
		s += ": " + m.body
	}
	if m.Problem != "" {
		s += " (malformed: " + m.Problem + ")"
	}
	return s
}

func (e *env) inboxCmd() *cobra.Command {
	var (
		peek bool
		wait time.Duration
		max  int
	)
	cmd := &cobra.Command{
		Use:   "inbox",
		Short: "print pending messages and ack them",
		Long: `Catch up on --agent's mail: print every pending message, oldest first, and
ack each once printed. --wait waits that long for mail when none is pending;
--peek prints without acking; --max stops after N messages.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if max < 0 || wait < 0 {
				return usageError{fmt.Errorf("--max and --wait must not be negative")}
			}
			a, err := e.agent()
			if err != nil {
				return err
			}
			if peek {
				ctx, cancel := e.ctx(cmd)
				defer cancel()
				msgs, err := a.Peek(ctx, max0(max, 1000))
				if err != nil {
					return err
				}
				for _, m := range msgs {
					if err := e.printMail(m); err != nil {
						return err
					}
				}
				return nil
			}
			n := 0
			h := func(_ context.Context, m bus.Message) error {
				n++
				return e.printMail(m)
			}
			cfg := bus.ReceiveConfig{UntilIdle: true, Max: max}
			if err := a.Receive(cmd.Context(), cfg, h); err != nil {
				return err
			}
			if n > 0 || wait <= 0 || (max > 0 && n >= max) {
				return nil
			}
			// Nothing was pending: wait for the first message, then catch up.
			wctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			if err := a.Receive(wctx, bus.ReceiveConfig{Max: 1}, h); err != nil || n == 0 {
				return err
			}
			if max > 0 {
				cfg.Max = max - n
				if cfg.Max == 0 {
					return nil
				}
			}
			return a.Receive(cmd.Context(), cfg, h)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&peek, "peek", false, "print pending messages without acking them")
	f.DurationVar(&wait, "wait", 0, "when nothing is pending, wait this long for a message")
	f.IntVar(&max, "max", 0, "print at most N messages (0: all)")
	return cmd
}

func max0(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

func (e *env) printMail(m bus.Message) error {
	mm := MailOf(m)
	return e.out.emit(mm, mm.Text())
}
