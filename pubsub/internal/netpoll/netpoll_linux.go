package netpoll

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"syscall"
	"time"
)

// open creates the epoll instance.
func open() (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	return &poller{fd: fd}, nil
}

// armEvents asks for one event on input or hang-up.
const armEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// arm registers fd (added: modifies its registration) for one event
// carrying id.
func (p *poller) arm(fd int, id uint64, added bool) error {
	op := syscall.EPOLL_CTL_ADD
	if added {
		op = syscall.EPOLL_CTL_MOD
	}
	ev := syscall.EpollEvent{Events: armEvents, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	if err := syscall.EpollCtl(p.fd, op, fd, &ev); err != nil {
		return fmt.Errorf("netpoll: epoll_ctl: %w", err)
	}
	return nil
}

// remove unregisters fd.
func (p *poller) remove(fd int) {
	syscall.EpollCtl(p.fd, syscall.EPOLL_CTL_DEL, fd, nil)
}

// loop waits for events and fires their watches, for the life of the
// process.
func (p *poller) loop() {
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.fd, events, -1)
		if err != nil {
			if err != syscall.EINTR {
				slog.Error("netpoll: epoll_wait failed", "err", err)
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		for _, ev := range events[:n] {
			p.fireSafely(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
		}
	}
}

// fireSafely fires a watch; a panic in its function is logged (inside Envoy
// an unrecovered panic would end the proxy).
func (p *poller) fireSafely(id uint64) {
	defer func() {
		if r := recover(); r != nil {
			slog.Error("netpoll: panic in a watch's function", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	p.fire(id)
}
