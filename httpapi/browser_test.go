package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

// browser starts a headless Chromium for the test, or skips the test when
// none is installed (.ci/run installs Debian's chromium).
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Skip("no Chromium on PATH: the dashboard's browser tests need it (Debian: apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1280, 1000))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// Start the browser now, without a timeout (it would stop the
	// browser), so its start-up is not part of a timing.
	require.NoError(t, chromedp.Do(ctx))
	return ctx
}

// run runs steps in the browser within timeout.
func run(t *testing.T, ctx context.Context, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx, steps...))
}

// value runs an action that reads a value, within 10 s.
func value[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	require.NoError(t, err)
	return v
}

// css is a CSS selector.
func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// openDashboard loads the page and waits until its feed is live and the
// claims panel has loaded.
func openDashboard(t *testing.T, ctx context.Context, e *env) {
	t.Helper()
	run(t, ctx, 30*time.Second,
		chromedp.Navigate(e.http.URL+"/"),
		chromedp.WaitVisible(css(`#live:not(.off)`)),
		chromedp.WaitVisible(css(`#tasks tbody tr`)),
	)
}

func TestDashboard_ClaimAppearsLive(t *testing.T) {
	ctx := browser(t)
	e := start(t)
	e.putRaw(t, "agent", "agent-1", map[string]any{"task": "T-1"}, time.Minute)
	openDashboard(t, ctx, e)

	_, err := e.sc.Claim(ctxT(t), "task", "T-1", 5*time.Minute, map[string]any{"status": "in_progress"})
	require.NoError(t, err)
	claimed := time.Now()
	run(t, ctx, 10*time.Second, chromedp.WaitVisible(css(`#tasks tr[data-key="task/T-1"]`)))
	took := time.Since(claimed)
	t.Logf("claim shown %v after it was applied", took)
	assert.Less(t, took, time.Second, "the claim took too long to appear")

	holder := value(t, ctx, chromedp.Text(css(`#tasks tr[data-key="task/T-1"] td:nth-child(2)`)))
	left := value(t, ctx, chromedp.Text(css(`#tasks tr[data-key="task/T-1"] td.left`)))
	assert.Equal(t, "agent-1", holder)
	assert.Regexp(t, `^[45]m\d+s$`, left)
	var holds string
	require.Eventually(t, func() bool {
		holds, _ = chromedp.Run(ctx, chromedp.Text(css(`#agents tr[data-key="agent/agent-1"] td:nth-child(2)`)))
		return holds == "task T-1"
	}, 5*time.Second, 50*time.Millisecond, "agents panel shows %q", holds)

	// Mail between agents shows who to whom and the type.
	subj, err := subjects.Msg("agent-2", "agent-1", "review", "request")
	require.NoError(t, err)
	_, err = e.js.Publish(ctxT(t), subj, []byte(`{}`))
	require.NoError(t, err)
	run(t, ctx, 5*time.Second, chromedp.WaitVisible(css(`#mail tbody tr td:nth-child(4)`)))
	mailRow := value(t, ctx, chromedp.Text(css(`#mail tbody tr`)))
	assert.Contains(t, mailRow, "agent-1")
	assert.Contains(t, mailRow, "agent-2")
	assert.Contains(t, mailRow, "review.request")

	// The audit tail shows the claim's audit record, and filters.
	run(t, ctx, 5*time.Second, chromedp.WaitVisible(css(`#audit tbody tr[data-seq]`)))
	if os.Getenv("CODI2_SCREENSHOT_DIR") != "" {
		decodeShot(t, value(t, ctx, chromedp.FullScreenshot(100)), "live.png")
	}
	run(t, ctx, 5*time.Second, chromedp.SendKeys(css(`#audit input[name=source]`), "nobody"),
		chromedp.WaitVisible(css(`#audit tbody td.empty`)))
}

// panelBoxes reads the position and size of each main panel.
const panelBoxes = `Array.from(document.querySelectorAll("section.panel")).map(s => {
  const r = s.getBoundingClientRect();
  return {id: s.id, x: r.x, y: r.y, w: r.width, h: r.height};
})`

type box struct {
	ID         string
	X, Y, W, H float64
}

func TestDashboard_ScreenshotShowsPanelsAndFitsAPhone(t *testing.T) {
	ctx := browser(t)
	e := start(t)
	openDashboard(t, ctx, e)
	boxes := value(t, ctx, chromedp.Evaluate[[]box](panelBoxes))
	shot := value(t, ctx, chromedp.FullScreenshot(100))
	ids := []string{}
	for _, b := range boxes {
		ids = append(ids, b.ID)
		assert.Greater(t, b.W, 200.0, b.ID)
		assert.Greater(t, b.H, 40.0, b.ID)
	}
	assert.Equal(t, []string{"agents", "tasks", "reservations", "mail", "audit", "health"}, ids)
	img := decodeShot(t, shot, "wide.png")
	assert.Equal(t, 1280, img.Bounds().Dx())
	// Structure, not pixels: each panel's box lies inside the screenshot
	// and is not blank (its heading is drawn).
	for _, b := range boxes {
		assert.LessOrEqual(t, b.X+b.W, float64(img.Bounds().Dx())+1, b.ID)
		assert.Greater(t, distinctColors(img, b), 2, "panel %s looks blank", b.ID)
	}

	// Phone width: one column, nothing wider than the screen.
	run(t, ctx, 10*time.Second, chromedp.EmulateViewport(375, 800))
	boxes = value(t, ctx, chromedp.Evaluate[[]box](panelBoxes))
	scrollWidth := value(t, ctx, chromedp.Evaluate[float64](`document.documentElement.scrollWidth`))
	shot = value(t, ctx, chromedp.FullScreenshot(100))
	assert.LessOrEqual(t, scrollWidth, 375.0)
	for _, b := range boxes {
		assert.InDelta(t, boxes[0].X, b.X, 1, "panel %s is not in the one column", b.ID)
		assert.LessOrEqual(t, b.X+b.W, 375.0, b.ID)
	}
	decodeShot(t, shot, "phone.png")
}

// decodeShot decodes a screenshot, and keeps it in
// $CODI2_SCREENSHOT_DIR when that is set.
func decodeShot(t *testing.T, shot []byte, name string) image.Image {
	t.Helper()
	if dir := os.Getenv("CODI2_SCREENSHOT_DIR"); dir != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), shot, 0o644))
	}
	img, err := png.Decode(bytes.NewReader(shot))
	require.NoError(t, err)
	return img
}

// distinctColors counts the colours in b's area of img, up to 10.
func distinctColors(img image.Image, b box) int {
	seen := map[[3]uint32]bool{}
	for y := int(b.Y); y < int(b.Y+b.H) && y < img.Bounds().Dy(); y += 2 {
		for x := int(b.X); x < int(b.X+b.W) && x < img.Bounds().Dx(); x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r, g, bl}] = true
			if len(seen) >= 10 {
				return len(seen)
			}
		}
	}
	return len(seen)
}

func TestDashboard_TenThousandRecordsArePaged(t *testing.T) {
	ctx := browser(t)
	e := start(t)
	const n = 10_000
	subj := func(i int) string {
		s, err := subjects.StateCmd("task", fmt.Sprintf("T-%05d", i), "agent-1")
		require.NoError(t, err)
		return s
	}
	cmd, err := state.Command{Op: state.OpPut, Fields: map[string]any{"status": "open"}}.MarshalJSON()
	require.NoError(t, err)
	for i := 0; i < n; i++ {
		_, err := e.js.PublishAsync(subj(i), cmd)
		require.NoError(t, err)
		if i%1000 == 999 {
			select {
			case <-e.js.PublishAsyncComplete():
			case <-time.After(60 * time.Second):
				require.FailNow(t, "publishes not acknowledged")
			}
		}
	}
	info, err := e.js.Stream(ctxT(t), "CODI_STATE")
	require.NoError(t, err)
	_, err = e.sc.Get(ctxT(t), "task", "T-00000", info.CachedInfo().State.LastSeq)
	require.NoError(t, err)

	start := time.Now()
	openDashboard(t, ctx, e)
	t.Logf("page with %d tasks loaded in %v", n, time.Since(start))
	rows := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#tasks tbody tr").length`))
	run(t, ctx, 10*time.Second,
		chromedp.Click(css(`#tasks [data-page=next]`)),
		chromedp.WaitVisible(css(`#tasks tr[data-key="task/T-00099"]`)),
	)
	last := value(t, ctx, chromedp.Text(css(`#tasks tbody tr:last-child td:first-child`)))
	assert.Equal(t, 50, rows)
	assert.Equal(t, "T-00099", last)
}
