// pauseBound bounds the longest stop-the-world GC pause between two reads
// of a node's samples (0: no pause came between them): no pause is longer
// than all of them together, nor than the bound of a bucket that grew by
// all of them (a bucket counts every pause up to its bound: the buckets
// are cumulative, so every bucket above a pause grows with it).
export function pauseBound(before, after) {
  const histogram = 'go_sched_pauses_total_gc_seconds';
  const value = (samples, name) => samples.find((s) => s.name === name)?.value ?? 0;
  const pauses = value(after, `${histogram}_count`) - value(before, `${histogram}_count`);
  if (!(pauses > 0)) return 0;
  let bound = value(after, `${histogram}_sum`) - value(before, `${histogram}_sum`);
  const buckets = new Map(before.filter((s) => s.name === `${histogram}_bucket`).map((s) => [s.labels.le, s.value]));
  for (const s of after) {
    if (s.name === `${histogram}_bucket` && s.value - (buckets.get(s.labels.le) ?? 0) >= pauses) {
      bound = Math.min(bound, Number(s.labels.le));
    }
  }
  return bound;
}
