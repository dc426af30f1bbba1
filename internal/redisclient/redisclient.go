// Package redisclient connects the cluster (its store and its membership)
// to Redis: a rueidis client whose command that meets a connection broken
// since its last use (the engine restarted, or a failover moved it) is sent
// again at once, on the next connection, instead of failing with EOF.
//
// rueidis notices a dead connection only when it next uses it, and it
// resends only read-only commands by itself; so after a restart the first
// write on each of its connections failed, whoever made it (a login's
// route, a stored push). A command is resent at most once per connection
// (each found broken is replaced), and at once: a Redis that died while
// running the command is not back within that, so a command is not applied
// twice.
package redisclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/redis/rueidis"
)

// New connects to the Redis at url (redis://[user:password@]host:port/db),
// bounding each write to the socket by timeout. url may name a Redis
// Cluster's seeds (its host, and addr= for each further one): the client
// then finds the cluster's primaries, and follows its slots as they move
// (MOVED, ASK, TRYAGAIN).
func New(url string, timeout time.Duration) (rueidis.Client, error) {
	co, err := rueidis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	co.DisableCache = true
	co.ConnWriteTimeout = timeout
	co.PipelineMultiplex = pipelineMultiplex
	c, err := rueidis.NewClient(co)
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", co.InitAddress, err)
	}
	return resending{c}, nil
}

// rueidis pipelines commands over 2^pipelineMultiplex connections.
const pipelineMultiplex = 2

// resending resends a command when its connection turns out broken, at
// most once per connection.
type resending struct{ rueidis.Client }

// Do implements rueidis.Client. (A command that failed without an answer
// from Redis is not recycled by rueidis: it can be sent again.)
func (c resending) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	r := c.Client.Do(ctx, cmd)
	for range 1 << pipelineMultiplex {
		if !Broken(r.Error()) || ctx.Err() != nil {
			break
		}
		r = c.Client.Do(ctx, cmd)
	}
	return r
}

// DoMulti implements rueidis.Client: the commands of the pipeline that
// met a broken connection are sent again, together (rueidis recycles only
// the commands that got an answer).
func (c resending) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	out := c.Client.DoMulti(ctx, cmds...)
	for range 1 << pipelineMultiplex {
		var again []int
		for i, r := range out {
			if Broken(r.Error()) {
				again = append(again, i)
			}
		}
		if len(again) == 0 || ctx.Err() != nil {
			break
		}
		resend := make([]rueidis.Completed, len(again))
		for j, i := range again {
			resend[j] = cmds[i]
		}
		for j, r := range c.Client.DoMulti(ctx, resend...) {
			out[again[j]] = r
		}
	}
	return out
}

// Broken reports whether err says the connection was gone, not that Redis
// refused the command.
func Broken(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
