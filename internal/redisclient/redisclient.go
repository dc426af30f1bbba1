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

// ErrRedisCluster refuses a Redis Cluster: every key of the cluster's data
// would have to carry its partition's hash tag, and every script touch one
// slot, which they do not yet.
var ErrRedisCluster = errors.New("cluster.redis names a Redis Cluster: a longlink cluster keeps its data on one Redis " +
	"primary (with replicas, and Sentinel for failover) until its keys are sharded; give it one Redis server")

// New connects to the Redis at url (redis://[user:password@]host:port/db),
// bounding each write to the socket by timeout. A Redis Cluster (url's
// host, or a seed in its addr= parameters) is refused: ErrRedisCluster.
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
	if c.Mode() == rueidis.ClientModeCluster {
		c.Close()
		return nil, ErrRedisCluster
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

// Broken reports whether err says the connection was gone, not that Redis
// refused the command.
func Broken(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
