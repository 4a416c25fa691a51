package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"
)

// Result is a metric's outcome against its design-document target.
type Result string

// The results.
const (
	// Pass: the target is met.
	Pass Result = "pass"
	// Fail: the target is missed; Metric.Miss says by how much and why.
	Fail Result = "fail"
	// Info: the metric has no target of its own; it is shown for context.
	Info Result = "info"
	// Skipped: the metric could not run in this mode; Metric.Note says why.
	Skipped Result = "skipped"
)

// Stat names the statistic a Target bounds.
type Stat string

// The statistics a target can bound.
const (
	StatP99  Stat = "p99"
	StatMax  Stat = "max"
	StatLost Stat = "lost"
)

// Target is a design-document target: Stat below Below (for StatLost: zero
// events lost or duplicated). Text is the target as the table prints it.
type Target struct {
	Stat  Stat          `json:"stat"`
	Below time.Duration `json:"below_ns,omitempty"`
	Text  string        `json:"text"`
}

// Metric is one row of the report. Durations are nanoseconds in JSON. A
// Metric is a plain value, safe to share.
type Metric struct {
	// Key identifies the metric for machines: message_one_way, rpc_round_trip,
	// state_update, state_read, audit_write, audit_fill, time_range_query,
	// restart_to_ready, events_lost.
	Key string `json:"key"`
	// Name is what the table prints.
	Name string `json:"name"`
	// Count is the number of samples (for events_lost: events acknowledged).
	Count int           `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
	// Throughput is operations per second over the measurement.
	Throughput float64 `json:"throughput_per_s"`
	// Target is the design document's target; nil for an Info row.
	Target *Target `json:"target,omitempty"`
	Result Result  `json:"result"`
	// Miss says, for a failed row, which statistic missed, by how much, and
	// the likely reason.
	Miss string `json:"miss,omitempty"`
	// Note qualifies what was measured.
	Note string `json:"note,omitempty"`
	// Split divides a publish-to-committed latency at the PubAck, for the
	// writes that have one.
	Split *Split `json:"split,omitempty"`
	// V1 compares with the v1 equivalents; the first is the one the
	// design's speed-up target is judged against.
	V1 []V1Compare `json:"v1,omitempty"`
}

// Split is where a durable write's time goes: publish to PubAck (stored in
// the JetStream stream) and PubAck to the commit watermark (consumed by the
// service and committed to its store). Percentiles of each part are taken
// separately, so they do not add up to the whole's.
type Split struct {
	AckP50    time.Duration `json:"ack_p50_ns"`
	AckP99    time.Duration `json:"ack_p99_ns"`
	CommitP50 time.Duration `json:"commit_p50_ns"`
	CommitP99 time.Duration `json:"commit_p99_ns"`
}

func (s *Split) String() string {
	return fmt.Sprintf("publish → PubAck p50 %s p99 %s, PubAck → committed p50 %s p99 %s",
		fmtDur(s.AckP50), fmtDur(s.AckP99), fmtDur(s.CommitP50), fmtDur(s.CommitP99))
}

// V1Compare is the measured v1 equivalent of a metric.
type V1Compare struct {
	// What is the v1 operation and mode, as the table prints it.
	What       string        `json:"what"`
	Count      int           `json:"count"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	P999       time.Duration `json:"p999_ns"`
	Throughput float64       `json:"throughput_per_s,omitempty"`
	// SpeedupP99 is v1's p99 over codi2's: above 1, codi2 is faster. Zero
	// when the latencies are not comparable (codi2 saturated on purpose).
	SpeedupP99 float64 `json:"speedup_p99"`
	// SpeedupThroughput is codi2's throughput over v1's, when both have one.
	SpeedupThroughput float64 `json:"speedup_throughput,omitempty"`
	// Note says what the v1 number does and does not include.
	Note string `json:"note,omitempty"`
}

// Loss counts events end to end: what the bench published, what the server
// acknowledged, what the services committed and what a reader got back.
type Loss struct {
	AuditPublished int `json:"audit_published"`
	AuditAcked     int `json:"audit_acked"`
	AuditCommitted int `json:"audit_committed"`
	AuditQueried   int `json:"audit_queried"`
	AuditLost      int `json:"audit_lost"`
	AuditDuplicate int `json:"audit_duplicated"`
	StateAcked     int `json:"state_acked"`
	StateApplied   int `json:"state_applied"`
	StateLost      int `json:"state_lost"`
	// StateRejected counts commands rejected with a conflict: every agent
	// writes its own record with expect_rev, so there should be none.
	StateRejected int `json:"state_rejected"`
	// AfterRestart is true when the counts were taken after the restarts.
	AfterRestart bool `json:"after_restart"`
}

// Lost is every acknowledged event or command a reader could not get back,
// plus duplicates: the contract promises exactly once.
func (l Loss) Lost() int { return l.AuditLost + l.AuditDuplicate + l.StateLost }

// V1Run is the integrity of one v1 log, as v1sim.Verify counted it.
type V1Run struct {
	Name      string  `json:"name"`
	Mode      string  `json:"mode"`
	Writers   int     `json:"writers"`
	Expected  int     `json:"expected"`
	Lines     int     `json:"lines"`
	Corrupted int     `json:"corrupted"`
	Spliced   int     `json:"spliced"`
	Lost      int     `json:"lost"`
	LossRate  float64 `json:"loss_rate"`
}

// Machine describes where the run happened.
type Machine struct {
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model,omitempty"`
	GoVersion  string `json:"go_version"`
	// LoadAvg is the 1-minute load average when the run started (Linux), a
	// hint of what else was running.
	LoadAvg string `json:"load_avg,omitempty"`
	// FsyncP50 and FsyncP99 are a probe of the data directory's disk: one
	// 100-byte write and fsync at a time. Every durable commit waits for at
	// least one.
	FsyncP50 time.Duration `json:"fsync_p50_ns"`
	FsyncP99 time.Duration `json:"fsync_p99_ns"`
}

// SpeedupTarget is the design document's "10-100x faster than v1", judged on
// each metric's first v1 comparison (p99 against p99).
const SpeedupTarget = 10.0

// Report is the outcome of Run. It is a plain value, safe to share.
type Report struct {
	Started time.Time     `json:"started"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// Mode is "embedded" or "external" (Config.NATSURL).
	Mode    string   `json:"mode"`
	Machine Machine  `json:"machine"`
	Config  Config   `json:"config"`
	Metrics []Metric `json:"metrics"`
	Loss    Loss     `json:"loss"`
	V1Runs  []V1Run  `json:"v1_runs"`
}

// Metric returns the metric with key, and whether there is one.
func (r Report) Metric(key string) (Metric, bool) {
	for _, m := range r.Metrics {
		if m.Key == key {
			return m, true
		}
	}
	return Metric{}, false
}

// Passed reports whether every metric with a target met it.
func (r Report) Passed() bool {
	for _, m := range r.Metrics {
		if m.Result == Fail {
			return false
		}
	}
	return true
}

// SpeedupMet returns how many metrics with a v1 equivalent are at least
// SpeedupTarget times faster than it (p99), and how many have one.
func (r Report) SpeedupMet() (met, compared int) {
	for _, m := range r.Metrics {
		if len(m.V1) == 0 || m.V1[0].SpeedupP99 == 0 {
			continue
		}
		compared++
		if m.V1[0].SpeedupP99 >= SpeedupTarget {
			met++
		}
	}
	return met, compared
}

// JSON writes the report as one indented JSON document.
func (r Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Table writes the report for people: the targets table, the comparison with
// v1, v1's integrity, the end-to-end event counts and a note per missed
// target.
func (r Report) Table(w io.Writer) error {
	ew := &errWriter{w: w}
	m := r.Machine
	mode := r.Mode
	if r.Config.Store != "" {
		mode += " " + r.Config.Store
	}
	fmt.Fprintf(ew, "codi2 bench: %s server, %d writers, %s/%s, %d CPUs (%s), %s, load %s, disk fsync p50 %s p99 %s, ran %s\n\n",
		mode, r.Config.Writers, m.OS, m.Arch, m.CPUs, orDash(m.CPUModel), m.GoVersion, orDash(m.LoadAvg),
		fmtDur(m.FsyncP50), fmtDur(m.FsyncP99), r.Elapsed.Round(100*time.Millisecond))

	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tN\tP50\tP99\tP99.9\tTHROUGHPUT\tTARGET\tRESULT")
	for _, x := range r.Metrics {
		target := "-"
		if x.Target != nil {
			target = x.Target.Text
		}
		if x.Key == KeyEventsLost {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Name, x.Count,
				fmt.Sprintf("lost %d", r.Loss.Lost()), "-", "-", "-", target, resultText(x))
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Name, x.Count,
			fmtDur(x.P50), fmtDur(x.P99), fmtDur(x.P999), fmtRate(x.Throughput), target, resultText(x))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	met, compared := r.SpeedupMet()
	fmt.Fprintf(ew, "\nversus CODI v1 in the same run (speed-up = v1 p99 / codi2 p99; design target %gx-100x: met by %d of %d):\n\n",
		SpeedupTarget, met, compared)
	tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tV1 EQUIVALENT\tV1 P50\tV1 P99\tV1 THROUGHPUT\tSPEED-UP P99\tSPEED-UP THROUGHPUT")
	for _, x := range r.Metrics {
		for i, v := range x.V1 {
			name := x.Name
			if i > 0 {
				name = ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, v.What, fmtDur(v.P50), fmtDur(v.P99),
				fmtRate(v.Throughput), fmtX(v.SpeedupP99), fmtX(v.SpeedupThroughput))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(r.V1Runs) > 0 {
		fmt.Fprintf(ew, "\nCODI v1 log integrity (what its readers could parse back):\n\n")
		tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "V1 LOG\tMODE\tWRITERS\tEVENTS\tLINES\tCORRUPTED\tSPLICED\tLOST\tLOSS")
		for _, v := range r.V1Runs {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f%%\n", v.Name, v.Mode, v.Writers, v.Expected,
				v.Lines, v.Corrupted, v.Spliced, v.Lost, 100*v.LossRate)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	l := r.Loss
	when := ""
	if l.AfterRestart {
		when = ", counted after the restarts"
	}
	fmt.Fprintf(ew, "\ncodi2 events end to end%s:\n", when)
	fmt.Fprintf(ew, "  audit: published %d, PubAck'd %d, committed %d, queried back %d, lost %d, duplicated %d\n",
		l.AuditPublished, l.AuditAcked, l.AuditCommitted, l.AuditQueried, l.AuditLost, l.AuditDuplicate)
	fmt.Fprintf(ew, "  state: PubAck'd %d, applied %d, lost %d, rejected %d\n",
		l.StateAcked, l.StateApplied, l.StateLost, l.StateRejected)

	var notes []string
	for _, x := range r.Metrics {
		switch {
		case x.Result == Fail && x.Miss != "":
			notes = append(notes, fmt.Sprintf("MISSED %s: %s", x.Name, x.Miss))
		case x.Result == Skipped && x.Note != "":
			notes = append(notes, fmt.Sprintf("SKIPPED %s: %s", x.Name, x.Note))
		}
	}
	for _, x := range r.Metrics {
		if x.Result != Skipped && x.Note != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", x.Name, x.Note))
		}
		for _, v := range x.V1 {
			if v.Note != "" {
				notes = append(notes, fmt.Sprintf("%s, v1 %s: %s", x.Name, v.What, v.Note))
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(ew, "\nnotes:\n")
		for _, n := range notes {
			fmt.Fprintf(ew, "  - %s\n", n)
		}
	}
	return ew.err
}

func resultText(m Metric) string {
	switch m.Result {
	case Pass:
		return "PASS"
	case Fail:
		return "FAIL"
	case Skipped:
		return "skipped"
	default:
		return "-"
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fmtDur prints d with three significant digits in a unit that suits it.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return sig3(float64(d)/float64(time.Microsecond)) + "µs"
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond)) + "ms"
	default:
		return sig3(d.Seconds()) + "s"
	}
}

// sig3 prints v (>= 1) with three significant digits.
func sig3(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// fmtRate prints operations per second.
func fmtRate(v float64) string {
	switch {
	case v <= 0 || math.IsInf(v, 0) || math.IsNaN(v):
		return "-"
	case v >= 1e6:
		return sig3(v/1e6) + "M/s"
	case v >= 1e3:
		return sig3(v/1e3) + "k/s"
	case v >= 1:
		return sig3(v) + "/s"
	default:
		return fmt.Sprintf("%.3f/s", v)
	}
}

// fmtX prints a speed-up factor.
func fmtX(v float64) string {
	switch {
	case v <= 0 || math.IsInf(v, 0) || math.IsNaN(v):
		return "-"
	case v >= 1:
		return sig3(v) + "x"
	default:
		return fmt.Sprintf("%.2g", v) + "x"
	}
}

// errWriter keeps the first write error so that Table can format freely and
// check once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
