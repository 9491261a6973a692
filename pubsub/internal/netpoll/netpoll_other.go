//go:build !linux

package netpoll

// open reports that this platform has no poller: callers read with a
// goroutine per connection.
func open() (*poller, error) { return nil, ErrUnsupported }

func (p *poller) arm(fd int, id uint64, added bool) error { return ErrUnsupported }

func (p *poller) remove(fd int) {}

func (p *poller) loop() {}
