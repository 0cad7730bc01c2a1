import Foundation
import Testing

/// Every shell snippet of README's first session runs against a real server, so the README never rots.
@Suite struct ReadmeTests {
    static func shellBlocks(after heading: String) throws -> [String] {
        let readme = try String(
            contentsOf: TestEnvironment.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        guard let start = readme.range(of: heading) else { throw TestFailure("README has no \(heading)") }
        var blocks: [String] = []
        var rest = readme[start.upperBound...]
        while let open = rest.range(of: "```sh\n") {
            guard let close = rest[open.upperBound...].range(of: "```") else { break }
            blocks.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
            if let next = rest.range(of: "\n## "),
                next.lowerBound < (rest.range(of: "```sh\n")?.lowerBound ?? rest.endIndex)
            {
                break
            }
        }
        return blocks
    }

    @Test func firstSessionSnippetsRun() throws {
        // As `bash scripts/serve.sh --allow-private-webhooks`, which the webhooks part of the tour uses.
        let s = try TestServer { $0.webhooks.allowPrivate = true }
        let blocks = try Self.shellBlocks(after: "## A first session")
        #expect(blocks.count >= 2)
        let bin = TestEnvironment.wharfBinary
        for block in blocks {
            // The snippets talk to the default address; point them at this test's server instead.
            var script = block.replacingOccurrences(of: "wharf=.build/release/wharf", with: "wharf=\(bin)")
            script = script.replacingOccurrences(of: "127.0.0.1/7411", with: "127.0.0.1/\(s.port)")
            script = "set -e\nexport WHARF_SERVER=127.0.0.1:\(s.port)\nwharf=\(bin)\n" + script
            if script.contains("make-report.sh") {
                script = script.replacingOccurrences(of: "./make-report.sh", with: "true")
            }
            let (status, out, err) = try TestDatabase.run(["bash", "-c", script])
            #expect(status == 0, "snippet failed:\n\(block)\n\(out)\n\(err)")
        }
        #expect(try s.database.sql("select count(*) from wharf.jobs where queue = 'mail'") != "0")
        #expect(try s.database.sql("select count(*) from wharf.webhook_deliveries where event = 'order.created'") == "1")
        #expect(try s.database.sql("select count(*) from wharf.schedules where target ? 'webhook'") == "1")
        #expect(try s.database.sql("select count(*) from wharf.webhook_deliveries where event = 'connector.changes'") == "1")
    }
}
