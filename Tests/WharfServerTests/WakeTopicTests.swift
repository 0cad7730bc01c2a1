import Testing
import WharfStore

/// The wake-up topics shared by the SQL that sends them and the server that routes them.
@Suite struct WakeTopicTests {
    @Test func payloadsSplitIntoTopicAndRest() {
        #expect(WakeTopic.parse("jobs:mail")! == (.jobs, "mail"))
        #expect(WakeTopic.parse("lock:cron:nightly")! == (.lock, "cron:nightly"), "only the first colon splits")
        #expect(WakeTopic.parse("hooks:")! == (.hooks, ""))
        #expect(WakeTopic.parse("hooks")! == (.hooks, ""))
        #expect(WakeTopic.parse("someday:x") == nil, "a topic of a newer version is ignored")
    }

    @Test func sqlAndPayloadsUseTheSameWords() {
        #expect(WakeTopic.jobs.notify("q.queue") == "pg_notify('wharf_wake', 'jobs:' || q.queue)")
        #expect(WakeTopic.hooks.notify() == "pg_notify('wharf_wake', 'hooks:' || '')")
        for topic in WakeTopic.allCases {
            #expect(WakeTopic.parse(topic.payload("x"))! == (topic, "x"))
        }
    }
}
