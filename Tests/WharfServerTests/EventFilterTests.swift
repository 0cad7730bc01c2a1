import Testing

@testable import WharfServer

/// The pure parts of the event stream: `EventFilter` (which events a subscriber takes), `RecentEvents`
/// (the window a stream resumes from), `EventInterest` (which types are worth building at all) and
/// `EventStream`'s bounded queue.
@Suite struct EventFilterTests {
    @Test func typePatternsAreExactAllOrAFamily() {
        #expect(EventFilter.pattern("job.dead", matches: "job.dead"))
        #expect(!EventFilter.pattern("job.dead", matches: "job.dead2"))
        #expect(EventFilter.pattern("*", matches: "lock.granted"))
        #expect(EventFilter.pattern("job.*", matches: "job.completed"))
        #expect(!EventFilter.pattern("job.*", matches: "jobs.completed"))
        #expect(!EventFilter.pattern("job.*", matches: "job."))
        #expect(!EventFilter.pattern("job.*", matches: "schedule.fired"))
    }

    @Test func badPatternsAreNamed() {
        #expect(EventFilter.problem("job.*") == nil && EventFilter.problem("*") == nil)
        #expect(EventFilter.problem("endpoint.disabled") == nil)
        #expect(EventFilter.problem("") != nil)
        #expect(EventFilter.problem("jo*b") != nil)
        #expect(EventFilter.problem(".*") != nil)
        #expect(EventFilter.problem("*.dead") != nil)
        #expect(EventFilter.problem(String(repeating: "a", count: 201)) != nil)
    }

    /// A subject list limits the events of its kind only.
    @Test func subjectListsLimitTheirKindOnly() {
        let f = EventFilter(types: ["*"], queues: ["mail"], endpoints: ["7"])
        #expect(f.matches(type: "job.dead", subject: EventSubject(kind: .queue, name: "mail")))
        #expect(!f.matches(type: "job.dead", subject: EventSubject(kind: .queue, name: "other")))
        #expect(f.matches(type: "schedule.fired", subject: EventSubject(kind: .schedule, name: "any")))
        #expect(f.matches(type: "delivery.failed", subject: EventSubject(kind: .endpoint, name: "7")))
        #expect(!f.matches(type: "endpoint.disabled", subject: EventSubject(kind: .endpoint, name: "8")))
        let jobsOnly = EventFilter(types: ["job.*"])
        #expect(!jobsOnly.matches(type: "lock.granted", subject: EventSubject(kind: .lock, name: "l")))
        #expect(EventFilter().matches(type: "job.dead", subject: nil) == false)
    }

    @Test func everyServerTypeHasItsSubjectKind() {
        #expect(EventType.allCases.count == 13)
        #expect(EventType.jobRescued.subjectKind == .queue)
        #expect(EventType.scheduleMissed.subjectKind == .schedule)
        #expect(EventType.lockExpired.subjectKind == .lock)
        #expect(EventType.deliveryFailed.subjectKind == .endpoint)
        #expect(EventType.endpointEnabled.subjectKind == .endpoint)
    }
}

@Suite struct RecentEventsTests {
    @Test func resumesAfterAnIdInTheWindow() {
        var w = RecentEvents<String>(capacity: 3)
        #expect(w.after(0).events == [])
        for s in ["a", "b", "c", "d"] { w.append(s) }
        #expect(w.lastSeq == 4 && w.oldestSeq == 2 && w.count == 3)
        #expect(w.after(1).events == ["b", "c", "d"], "the one after the oldest kept is still complete")
        #expect(w.after(3).events == ["d"])
        #expect(w.after(4).events == [])
    }

    @Test func saysSoWhenEventsAfterTheIdWereForgotten() {
        var w = RecentEvents<Int>(capacity: 2)
        for i in 1...5 { w.append(i) }
        guard case .gap(let oldest) = w.after(2) else { Issue.record("no gap"); return }
        #expect(oldest == 4)
        guard case .unknown = w.after(6) else { Issue.record("an id never given out is unknown"); return }
    }

    /// A ring: memory stays at `capacity` whatever the number of events.
    @Test func holdsAtMostItsCapacity() {
        var w = RecentEvents<Int>(capacity: 100)
        for i in 1...100_000 { w.append(i) }
        #expect(w.count == 100 && w.oldestSeq == 99_901)
        #expect(w.after(99_990).events == Array(99_991...100_000))
    }
}

@Suite struct EventInterestTests {
    @Test func onlyTypesSomeoneWantsAreWanted() {
        var i = EventInterest()
        #expect(i.wanted.isEmpty)
        i.subscribed(["job.*"])
        #expect(i.wanted == [.jobCompleted, .jobFailed, .jobDead, .jobCancelled, .jobRescued])
        i.subscribed(["job.dead"])
        i.unsubscribed(["job.*"])
        #expect(i.wanted == [.jobDead], "the other subscriber still wants job.dead")
        i.unsubscribed(["job.dead"])
        #expect(i.wanted.isEmpty && i.announced.isEmpty)
    }

    @Test func anEndedStreamLingersThenExpires() {
        var i = EventInterest()
        i.subscribed(["lock.granted"])
        i.unsubscribed(["lock.granted"], lingerUntilMs: 1_000)
        #expect(i.wanted == [.lockGranted] && i.announced == ["lock.granted"])
        let early = i.expire(nowMs: 999)
        #expect(!early)
        let due = i.expire(nowMs: 1_000)
        #expect(due)
        #expect(i.wanted.isEmpty)
    }

    @Test func otherReplicasAndEndpointsCountApart() {
        var i = EventInterest()
        i.announced(by: "r2", ["schedule.fired"], untilMs: 500)
        i.hooksChanged(["job.dead"])
        #expect(i.wanted == [.scheduleFired, .jobDead])
        #expect(i.remoteWanted == [.scheduleFired] && i.hookWanted == [.jobDead])
        #expect(i.announced.isEmpty, "a replica announces only its own subscribers")
        i.expire(nowMs: 500)
        #expect(i.wanted == [.jobDead])
        i.announced(by: "r2", ["*"], untilMs: 900)
        #expect(i.remoteWanted.count == EventType.allCases.count)
        i.announced(by: "r2", [], untilMs: 900)
        #expect(i.remoteWanted.isEmpty)
    }
}

@Suite struct EventStreamTests {
    static func event(_ n: Int) -> RaisedEvent {
        let e = RaisedEvent(type: "job.dead", subject: nil, at: "2026-01-01T00:00:00Z", data: ["n": .from(n)])
        e.id = "b-\(n)"
        return e
    }

    /// A full queue takes nothing more: the stream hands out what it holds, then its last message names
    /// the last of them.
    @Test func aFullQueueEndsTheStreamAfterWhatItHolds() {
        let s = EventStream(filter: EventFilter(types: ["*"]), capacity: 2, heartbeatMs: 1_000, nowMs: 0)
        for n in 1...5 { s.push(Self.event(n), nowMs: 0) }
        #expect(s.overflowed && s.lastQueuedID == "b-2")
        #expect(s.pop() == Self.event(1).sseMessage)
        #expect(s.pop() != nil && s.pop() == nil && s.isDrained)
        let last = String(decoding: s.droppedMessage, as: UTF8.self)
        #expect(last.hasPrefix("event: events.dropped\ndata: ") && last.contains("\"lastEventId\":\"b-2\""))
    }

    @Test func heartbeatsOnlyWhenIdle() {
        let s = EventStream(filter: EventFilter(types: ["*"]), capacity: 10, heartbeatMs: 1_000, nowMs: 0)
        s.heartbeat(nowMs: 999)
        #expect(s.isDrained)
        s.heartbeat(nowMs: 1_000)
        #expect(s.pop() == Array(": keep-alive\n\n".utf8))
        s.push(Self.event(1), nowMs: 1_500)
        s.heartbeat(nowMs: 2_400)
        #expect(s.pop() == Self.event(1).sseMessage && s.pop() == nil)
    }
}

extension RecentEvents.Resume {
    var events: [Element]? {
        if case .events(let e) = self { return e }
        return nil
    }
}
