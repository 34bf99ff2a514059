package lab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc runs one node as a separate process (qrelayd, or "qrelayctl
// daemon"), again at each Start, with its output captured: in LogPath if
// set (truncated at each start), else in memory (Output).
//
// The fields are read at Start; set them before. The methods are safe for
// concurrent use and are about the current run, the one the last Start
// began.
type Proc struct {
	Name    string   // for errors, "node a"
	Path    string   // the program
	Args    []string // its arguments
	Env     []string // added to this process's environment at each start
	LogPath string

	mu  sync.Mutex
	run *procRun
}

// procRun is one life of a Proc.
type procRun struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed once it exited; then err is set
	err      error
	out      *lockedBuffer // nil with a LogPath
	stopOnce sync.Once
}

// Start starts a new run. The previous one, if any, must have exited.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run != nil {
		select {
		case <-p.run.done:
		default:
			return fmt.Errorf("starting %s: it is still running (pid %d)", p.Name, p.run.cmd.Process.Pid)
		}
	}
	r := &procRun{done: make(chan struct{})}
	var out io.Writer
	var logFile *os.File
	if p.LogPath != "" {
		f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		logFile, out = f, f
	} else {
		r.out = &lockedBuffer{}
		out = r.out
	}
	r.cmd = exec.Command(p.Path, p.Args...)
	r.cmd.Env = append(os.Environ(), p.Env...)
	r.cmd.Stdout, r.cmd.Stderr = out, out
	if err := r.cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return fmt.Errorf("starting %s (%s): %w", p.Name, r.cmd, err)
	}
	go func() {
		r.err = r.cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		close(r.done)
	}()
	p.run = r
	return nil
}

func (p *Proc) current() *procRun {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.run
}

// Pid is the process ID of the current run.
func (p *Proc) Pid() int { return p.current().cmd.Process.Pid }

// Done is closed when the current run has exited.
func (p *Proc) Done() <-chan struct{} { return p.current().done }

// Exited reports whether the current run has exited (true if none began).
func (p *Proc) Exited() bool {
	r := p.current()
	if r == nil {
		return true
	}
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// Err is how the current run ended (nil for exit status 0), once Done is
// closed.
func (p *Proc) Err() error {
	r := p.current()
	<-r.done
	return r.err
}

// Signal sends sig to the current run.
func (p *Proc) Signal(sig os.Signal) error { return p.current().cmd.Process.Signal(sig) }

// Kill sends SIGKILL to the current run and waits for it to exit.
func (p *Proc) Kill() error {
	r := p.current()
	r.cmd.Process.Kill()
	<-r.done
	return r.err
}

// ErrKilled says Stop had to kill a process that outlived its grace.
var ErrKilled = errors.New("killed: it did not exit in time")

// Stop sends sig to the current run, the first time Stop is called on
// it, and waits for it to exit; after grace it kills it, and returns
// ErrKilled joined to how it ended. Otherwise it returns how it ended.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) error {
	r := p.current()
	r.stopOnce.Do(func() { r.cmd.Process.Signal(sig) })
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-r.done:
		return r.err
	case <-t.C:
		r.cmd.Process.Kill()
		<-r.done
		return errors.Join(ErrKilled, r.err)
	}
}

// Output is what the current run wrote, without a LogPath.
func (p *Proc) Output() string {
	if r := p.current(); r != nil && r.out != nil {
		return r.out.String()
	}
	return ""
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
