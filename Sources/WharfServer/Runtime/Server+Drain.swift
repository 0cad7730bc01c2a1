import WharfCore
import WharfStore

/// The drain on SIGTERM (Protocol/README.md, "Draining"). Loop thread only.
///
/// The JSON-RPC listener is closed at once and new calls are refused (`shutting_down`, retryable); the
/// long polls (`jobs.lease`, `locks.acquire` with `waitMs`, `jobs.wait`) are answered at once with nothing and
/// `draining: true`; each connection closes as soon as nothing of it is in flight; the scheduler and
/// the webhook dispatcher claim nothing more, give back what they claimed and did not start, and
/// finish what they started. A worker's leased jobs stay leased when its connection closes: it reports
/// them through another replica. When nothing is left, or `shutdownGraceMs` ran out, the server stops.
extension Server {
    /// Tells every feature that the drain began.
    func drainServices() {
        jobs.drain()
        jobWaits.drain()
        locks.drain()
        cron.drain()
        webhooks.drain()
    }

    /// Closes the connections with nothing in flight (after writing what they owe).
    func closeIdleConnections() {
        for c in Array(connections.values) where c.inFlight == 0 { c.closeGracefully() }
    }

    /// Something of the drain is still under way: a connection, a cron batch or a webhook attempt.
    var drainBusy: Bool { !connections.isEmpty || cron.busy || webhooks.busy }

    /// Wakes the other replicas' scheduler and webhook dispatcher, so they look at once for what this one
    /// gave back or left due.
    func handOffDuties() {
        guard schemaReady else { return }
        store.publish(WakeTopic.cron.payload(String(Timestamp.nowMs()))) { _ in }
        store.publish(WakeTopic.hooks.payload("")) { _ in }
    }
}
