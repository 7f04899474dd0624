package nodetest

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

//go:embed sioagent.mjs
var sioAgentScript []byte

// SIO is a socket.io-client 4.8 in a Node process of its own that a test
// drives: it emits what the test says and reports every event it gets.
// Tests use it where a socket.io client must talk with Go peers (a /ws
// client, another node) turn by turn, which a self-contained script
// cannot.
type SIO struct {
	t       testing.TB
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	events  chan SIOEvent
	done    chan struct{}
	quit    chan struct{}
	once    sync.Once
	backlog []SIOEvent
	// ID is the socket's id (socket.io's sid: icegate's peer id) once
	// connected; Transport the Engine.IO transport it connected with.
	ID, Transport string
}

// SIOEvent is one event a socket got: its name and arguments.
type SIOEvent struct {
	Name      string            `json:"ev"`
	Args      []json.RawMessage `json:"args"`
	ID        string            `json:"id"`
	Transport string            `json:"transport"`
}

// StartSIO starts a socket.io client of url with the io() options opts
// (nil for the defaults: polling, then the upgrade) and waits for it to
// connect. The process ends with the test (or at Close).
func StartSIO(t testing.TB, url string, opts map[string]any) *SIO {
	t.Helper()
	dir, node := Dir(t)
	tmp := t.TempDir()
	LinkModules(t, dir, tmp)
	script := filepath.Join(tmp, "sioagent.mjs")
	if err := os.WriteFile(script, sioAgentScript, 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := json.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	a := &SIO{t: t, events: make(chan SIOEvent, 1024), done: make(chan struct{}), quit: make(chan struct{})}
	a.cmd = exec.Command(node, script, url, string(o))
	a.cmd.Stderr = os.Stderr
	if a.stdin, err = a.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(a.done)
		defer close(a.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			var e SIOEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = SIOEvent{Name: "!undecodable", Args: []json.RawMessage{json.RawMessage(`"` + sc.Text() + `"`)}}
			}
			select {
			case a.events <- e:
			case <-a.quit:
			}
		}
	}()
	t.Cleanup(a.stop)
	for {
		select {
		case e, ok := <-a.events:
			if !ok {
				t.Fatal("socket.io client exited before it connected")
			}
			switch e.Name {
			case "connect":
				a.take(e)
				return a
			case "connect_error":
				t.Fatalf("socket.io client: connect_error %s", e.Args)
			}
			a.backlog = append(a.backlog, e)
		case <-time.After(10 * time.Second):
			t.Fatal("socket.io client: not connected within 10s")
		}
	}
}

// Emit emits an event: name and its arguments, each marshalled to JSON.
func (a *SIO) Emit(name string, args ...any) {
	a.t.Helper()
	b, err := json.Marshal(append([]any{name}, args...))
	if err != nil {
		a.t.Fatal(err)
	}
	if _, err := a.stdin.Write(append(b, '\n')); err != nil {
		a.t.Fatalf("socket.io client: %v", err)
	}
}

// Event waits up to 5 s for the next event called name and returns its
// arguments; other events before it are kept for later calls.
func (a *SIO) Event(name string) []json.RawMessage {
	a.t.Helper()
	for i, e := range a.backlog {
		if e.Name == name {
			a.backlog = append(a.backlog[:i:i], a.backlog[i+1:]...)
			return a.take(e)
		}
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e, ok := <-a.events:
			if !ok {
				a.t.Fatalf("socket.io client exited waiting for %q (events not taken: %v)", name, a.names())
			}
			if e.Name == name {
				return a.take(e)
			}
			a.backlog = append(a.backlog, e)
		case <-timeout:
			a.t.Fatalf("socket.io client: no %q within 5s (events not taken: %v)", name, a.names())
		}
	}
}

func (a *SIO) take(e SIOEvent) []json.RawMessage {
	if e.Name == "connect" {
		a.ID, a.Transport = e.ID, e.Transport
	}
	return e.Args
}

// Quiet fails the test if an event called name comes within d (or is
// waiting already).
func (a *SIO) Quiet(name string, d time.Duration) {
	a.t.Helper()
	for _, e := range a.backlog {
		if e.Name == name {
			a.t.Fatalf("unexpected %s %s", name, e.Args)
		}
	}
	timeout := time.After(d)
	for {
		select {
		case e, ok := <-a.events:
			if !ok {
				return
			}
			if e.Name == name {
				a.t.Fatalf("unexpected %s %s", name, e.Args)
			}
			a.backlog = append(a.backlog, e)
		case <-timeout:
			return
		}
	}
}

func (a *SIO) names() []string {
	var n []string
	for _, e := range a.backlog {
		n = append(n, e.Name)
	}
	return n
}

// Close disconnects the socket (socket.disconnect()) and waits for the
// process to exit.
func (a *SIO) Close() {
	_, _ = a.stdin.Write([]byte("close\n"))
	a.stop()
}

// stop ends the process: it exits when its stdin closes, and is killed
// (by its PID) if it has not within 5 s.
func (a *SIO) stop() {
	a.once.Do(func() { close(a.quit) })
	_ = a.stdin.Close()
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
	_ = a.cmd.Wait()
}
