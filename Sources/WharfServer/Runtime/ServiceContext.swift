import Logging
import WharfJSON
import WharfPQ
import WharfStore
import WharfUV

/// What the runtime offers a feature's service: the loop, the store and its pool, the configuration,
/// and a few hooks. A service gets this, never the `Server`; it reaches another feature only through
/// that feature's service, passed to it by name.
struct ServiceContext {
    let loop: EventLoop
    let store: Store
    let config: ServerConfig
    let logger: Logger
    unowned let hooks: RuntimeHooks

    var pool: PQPool { store.pool }

    /// Runs `body` in this loop turn's check phase, before replies are written (where batches commit).
    func runBeforeFlush(_ body: @escaping () -> Void) { hooks.runBeforeFlush(body) }

    /// Calls `handler` with the rest of every `NOTIFY wharf_wake` payload of `topic`, from any replica.
    func onWake(_ topic: WakeTopic, _ handler: @escaping (String) -> Void) { hooks.onWake(topic, handler) }

    /// Adds a periodic chore, started once the server serves and stopped at shutdown.
    func addChore(everyMs: UInt64, _ body: @escaping () -> Void) { hooks.addChore(everyMs: everyMs, body) }

    /// True when a subscriber or endpoint, on any replica, wants events of `type`: build one only then.
    func wants(_ type: EventType) -> Bool { hooks.wantsEvent(type) }

    /// Raises an event about `subject` (its queue, schedule, lock or endpoint) for subscribers on every
    /// replica and the endpoints that list its type, when someone wants it; `data` is built only then.
    func raise(_ type: EventType, subject: String?, _ data: @autoclosure () -> JSON) {
        if hooks.wantsEvent(type) { hooks.raiseEvent(type, subject: subject, data: data()) }
    }

    /// True once shutdown began.
    var draining: Bool { hooks.draining }

    /// The server's Prometheus metrics, where each feature counts what happens (`ServerMetrics`).
    var metrics: ServerMetrics { hooks.metrics }

    /// The batching schedule every service's batchers use: once per loop turn, before the flush.
    var batchSchedule: (@escaping () -> Void) -> Void {
        let hooks = hooks
        return { [unowned hooks] body in hooks.runBeforeFlush(body) }
    }
}

/// The runtime's side of `ServiceContext` (the `Server` implements it).
protocol RuntimeHooks: AnyObject {
    func runBeforeFlush(_ body: @escaping () -> Void)
    func onWake(_ topic: WakeTopic, _ handler: @escaping (String) -> Void)
    func addChore(everyMs: UInt64, _ body: @escaping () -> Void)
    func wantsEvent(_ type: EventType) -> Bool
    func raiseEvent(_ type: EventType, subject: String?, data: JSON)
    var draining: Bool { get }
    var metrics: ServerMetrics { get }
}
