import Foundation
import WharfHTTP
import WharfRPC

extension HTTPService {
    /// `GET /events`: a Server-Sent Events stream of the events that match the query's filter
    /// (`events`, `queues`, `schedules`, `locks`, `endpoints`: comma-separated or repeated;
    /// `heartbeatMs`), resumed after `Last-Event-ID` (the header, or a `lastEventId` parameter) from this
    /// replica's window. Authorized as `POST /rpc` is (any role may subscribe).
    func events(_ request: HTTPRequest, on conn: HTTPConnection, _ reply: @escaping (HTTPResponse) -> Void) {
        let (role, _, refusal) = credential(request, on: conn)
        if let refusal { return reply(refusal) }
        guard role != nil else { return reply(unauthorized("GET /events needs Authorization: Bearer TOKEN")) }
        let query = Self.query(request.target)
        var filter = EventFilter()
        let types = query["events"] ?? []
        guard !types.isEmpty else {
            return reply(badFilter("events", "is required: event types such as job.dead, job.*, or *"))
        }
        for t in types {
            if let problem = EventFilter.problem(t) { return reply(badFilter("events", "\(t): \(problem)")) }
        }
        filter.types = Set(types)
        filter.queues = query["queues"].map(Set.init)
        filter.schedules = query["schedules"].map(Set.init)
        filter.locks = query["locks"].map(Set.init)
        filter.endpoints = query["endpoints"].map(Set.init)
        var heartbeatMs: UInt64 = 15_000
        if let h = query["heartbeatMs"]?.last {
            guard let ms = UInt64(h), (1_000...300_000).contains(ms) else {
                return reply(badFilter("heartbeatMs", "must be milliseconds from 1000 to 300000"))
            }
            heartbeatMs = ms
        }
        let last = request.header("last-event-id") ?? query["lastEventId"]?.last
        conn.openEventStream(server.events.openStream(filter: filter, lastEventID: last, heartbeatMs: heartbeatMs))
    }

    private func badFilter(_ field: String, _ detail: String) -> HTTPResponse {
        Self.errorResponse(
            status: 400, reason: "invalid_params", "\(field) \(detail)", extra: ["field": .string(field)])
    }

    /// The query's parameters, percent-decoded; comma-separated values are split, repeats add up.
    static func query(_ target: String) -> [String: [String]] {
        guard let q = target.firstIndex(of: "?") else { return [:] }
        var out: [String: [String]] = [:]
        for pair in target[target.index(after: q)...].split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decoded(_ s: Substring) -> String {
                String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s)
            }
            let key = decoded(kv[0])
            let values = kv.count > 1 ? decoded(kv[1]).split(separator: ",").map(String.init) : []
            out[key, default: []] += values
        }
        return out
    }
}
