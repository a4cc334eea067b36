package executor

import (
	"os"
	"time"
)

// capturedOutput is what was kept of one output stream: at most the limit,
// whether there was more, and how much there was in all.
type capturedOutput struct {
	data  []byte
	more  bool
	total int64
}

// pipe carries one output stream of a child. The child writes to w; a
// goroutine drains r to the end, keeping only the first limit bytes, so a
// chatty child never blocks and never grows memory.
type pipe struct {
	r, w    *os.File
	limit   int64
	out     capturedOutput
	done    chan struct{}
	started bool
}

type outputs struct{ stdout, stderr *pipe }

func newOutputs(limit int64) (*outputs, error) {
	stdout, err := newPipe(limit)
	if err != nil {
		return nil, err
	}
	stderr, err := newPipe(limit)
	if err != nil {
		stdout.r.Close()
		stdout.w.Close()
		return nil, err
	}
	return &outputs{stdout: stdout, stderr: stderr}, nil
}

func newPipe(limit int64) (*pipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &pipe{r: r, w: w, limit: limit, done: make(chan struct{})}, nil
}

// closeWriters drops this process's copies of the write ends once the child
// holds its own, so the readers see EOF when the child's side closes.
func (o *outputs) closeWriters() {
	o.stdout.w.Close()
	o.stderr.w.Close()
}

func (o *outputs) drain() {
	go o.stdout.drain()
	go o.stderr.drain()
	o.stdout.started, o.stderr.started = true, true
}

func (p *pipe) drain() {
	defer close(p.done)
	buf := make([]byte, 32<<10)
	for {
		n, err := p.r.Read(buf)
		p.keep(buf[:n])
		if err != nil {
			return
		}
	}
}

func (p *pipe) keep(b []byte) {
	p.out.total += int64(len(b))
	room := p.limit - int64(len(p.out.data))
	if int64(len(b)) > room {
		b, p.out.more = b[:max(room, 0)], true
	}
	p.out.data = append(p.out.data, b...)
}

// collect waits for both streams to end. Once the process group is dead
// only a process that left it can hold a pipe open; after drainGrace the
// pipes are closed under it.
func (o *outputs) collect() (*capturedOutput, *capturedOutput) {
	pipes := []*pipe{o.stdout, o.stderr}
	if o.stdout.started {
		closeAll := time.AfterFunc(drainGrace, func() { closeReaders(pipes) })
		for _, p := range pipes {
			<-p.done
		}
		closeAll.Stop()
	}
	closeReaders(pipes)
	return &o.stdout.out, &o.stderr.out
}

func closeReaders(pipes []*pipe) {
	for _, p := range pipes {
		_ = p.r.Close()
	}
}
