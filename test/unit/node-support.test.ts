import { describe, expect, test } from "vitest";
import { quietAwsNodeWarning } from "../../src/node-support.js";

describe("the AWS SDK's Node version warning", () => {
  test("on Node 20 the SDK's nine lines are switched off the documented way and one line is returned", () => {
    const env: NodeJS.ProcessEnv = {};
    expect(quietAwsNodeWarning(env, "v20.20.2")).toMatch(/Node v20.20.2 .* Node 22 or 24/);
    expect(env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED).toBe("true");
  });

  test("on Node 22 and 24 nothing to say; a user's own setting is kept", () => {
    expect(quietAwsNodeWarning({}, "v22.23.3")).toBeUndefined();
    expect(quietAwsNodeWarning({}, "v24.1.0")).toBeUndefined();
    const env: NodeJS.ProcessEnv = { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "false" };
    quietAwsNodeWarning(env, "v20.1.0");
    expect(env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED).toBe("false");
  });
});
