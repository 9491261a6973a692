// Package bench measures the gateway against direct franz-go on loopback:
// throughput, latency, idle-session memory and fan-out cost. It is the
// engine of the pubsub-bench command.
//
// Layout: the benchmark binary starts two children from its own executable,
// the Kafka broker (kfake) and the gateway (the standalone session server),
// each in a process of its own. The load generators, the direct franz-go
// consumer and the WebSocket clients, run in the parent. So both sides of
// every ratio read from the same out-of-process broker, and the gateway's
// memory is measured without its clients in it.
package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"sync"
)

// RoleEnv names the environment variable that starts the benchmark binary
// as a child process in a role (RoleBroker or RoleGateway) instead of as
// the benchmark.
const RoleEnv = "PUBSUB_BENCH_ROLE"

// Child roles.
const (
	RoleBroker  = "broker"
	RoleGateway = "gateway"
)

// RunChild runs the role named in RoleEnv with args (the command line after
// the program name). It reports whether a role was set; err is the role's
// failure.
func RunChild(args []string) (isChild bool, err error) {
	switch role := os.Getenv(RoleEnv); role {
	case "":
		return false, nil
	case RoleBroker:
		return true, runBroker(args)
	case RoleGateway:
		return true, runGateway(args)
	default:
		return true, fmt.Errorf("unknown %s %q", RoleEnv, role)
	}
}

// child is a process started from the benchmark's own binary in a role. It
// prints one JSON line when ready, then answers one JSON line per command
// line written to its stdin, and exits when its stdin closes, so that it
// never outlives the benchmark.
type child struct {
	role string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	mu   sync.Mutex
}

// startChild starts role with args and decodes its ready line into ready.
func startChild(role string, ready any, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), RoleEnv+"="+role)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	c := &child{role: role, cmd: cmd, in: in, out: bufio.NewScanner(out)}
	if err := c.readLine(ready); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// call sends command and decodes the child's answer into reply.
func (c *child) call(command string, reply any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.in, command+"\n"); err != nil {
		return fmt.Errorf("%s %s: %w", c.role, command, err)
	}
	return c.readLine(reply)
}

func (c *child) readLine(v any) error {
	if !c.out.Scan() {
		if err := c.out.Err(); err != nil {
			return fmt.Errorf("%s: %w", c.role, err)
		}
		return fmt.Errorf("%s: exited", c.role)
	}
	var a answer
	if err := json.Unmarshal(c.out.Bytes(), &a); err != nil {
		return fmt.Errorf("%s: bad answer %q: %w", c.role, c.out.Text(), err)
	}
	if a.Error != "" {
		return fmt.Errorf("%s: %s", c.role, a.Error)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(a.Value, v)
}

// stop closes the child's stdin and waits for it to exit.
func (c *child) stop() error {
	c.in.Close()
	if err := c.cmd.Wait(); err != nil {
		return fmt.Errorf("%s: %w", c.role, err)
	}
	return nil
}

// answer is one line a child writes.
type answer struct {
	Value json.RawMessage `json:"value,omitempty"`
	Error string          `json:"error,omitempty"`
}

// serveCommands is the child side: it writes ready, then answers each
// command line on stdin with handle until stdin closes.
func serveCommands(ready any, handle func(command string) (any, error)) error {
	out := json.NewEncoder(os.Stdout)
	write := func(v any, err error) error {
		var a answer
		if err != nil {
			a.Error = err.Error()
		} else if a.Value, err = json.Marshal(v); err != nil {
			a.Error = err.Error()
		}
		return out.Encode(a)
	}
	if err := write(ready, nil); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		v, err := safeHandle(handle, strings.TrimSpace(in.Text()))
		if err := write(v, err); err != nil {
			return err
		}
	}
	return in.Err()
}

// safeHandle runs one command, turning a panic into an error answer.
func safeHandle(handle func(string) (any, error), command string) (v any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("command %q panicked: %v\n%s", command, p, debug.Stack())
		}
	}()
	return handle(command)
}

var errUnknownCommand = errors.New("unknown command")
