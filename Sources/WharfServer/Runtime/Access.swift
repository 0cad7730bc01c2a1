/// Who may call what: the one table the server enforces.
///
/// `Protocol/README.md` prints the same table; `AccessTests` compares the two and calls every method
/// with every role, so neither can drift from the other. `admin` may call everything. The open
/// methods (`server.ping`, `session.hello`) may also be called before `session.hello`.
enum Access {
    private static let readers: Set<Role> = [.reader, .producer, .worker]
    private static let producers: Set<Role> = [.producer]
    private static let workers: Set<Role> = [.worker]
    private static let senders: Set<Role> = [.producer, .worker]
    private static let adminOnly: Set<Role> = []

    /// The roles besides `admin` that may call each served method.
    static let table: [String: Set<Role>] = [
        "server.ping": readers, "server.info": readers, "server.health": readers, "server.replicas": readers,
        "session.hello": readers,
        // Jobs: producers enqueue and steer, workers run, everyone reads.
        "jobs.enqueue": producers, "jobs.enqueueBatch": producers, "jobs.cancel": producers, "jobs.retry": producers,
        "jobs.lease": workers, "jobs.heartbeat": workers, "jobs.complete": workers, "jobs.fail": workers,
        "jobs.get": readers, "jobs.list": readers, "jobs.wait": readers,
        // Queues: pausing is an operation producers own; retry and retention settings are the operator's.
        "queues.list": readers, "queues.stats": readers, "queues.pause": producers, "queues.resume": producers,
        "queues.configure": adminOnly,
        // Schedules enqueue jobs, so only producers manage them.
        "cron.upsert": producers, "cron.remove": producers, "cron.pause": producers, "cron.resume": producers,
        "cron.trigger": producers, "cron.get": readers, "cron.list": readers, "cron.preview": readers,
        // Locks are held by the processes that do the work.
        "locks.acquire": workers, "locks.renew": workers, "locks.release": workers,
        "locks.get": readers, "locks.list": readers,
        // Endpoints hold secrets and decide where data goes: the operator's. Anyone who does work sends.
        "webhooks.register": adminOnly, "webhooks.update": adminOnly, "webhooks.remove": adminOnly,
        "webhooks.rotateSecret": adminOnly, "webhooks.enable": adminOnly, "webhooks.test": adminOnly,
        "webhooks.send": senders, "webhooks.redeliver": producers, "webhooks.recover": producers,
        "webhooks.get": readers, "webhooks.list": readers, "webhooks.health": readers,
        "webhooks.deliveries": readers,
        "events.subscribe": readers, "events.unsubscribe": readers,
        "rpc.discover": readers,
        // Runs and batches are made by jobs.enqueue* and jobs.complete; producers cancel runs.
        "runs.get": readers, "runs.list": readers, "runs.cancel": producers, "batches.get": readers,
    ]

    /// Whether `role` may see what receivers answered (response bodies can carry anything a receiver
    /// chose to echo back, secrets included): the endpoint's owners, not every reader.
    static func seesResponseBodies(_ role: Role?) -> Bool { role == nil || role == .admin || role == .producer }
}
