// SPDX-License-Identifier: Apache-2.0
// Flamenco 3 job type "farmplug": runs the tasks of a farmplug job graph.
//
// Install: copy this file to the "scripts" folder next to the flamenco-manager executable and
// restart the Manager. `farmplug submit --farm flamenco` posts jobs of this type; its "tasks"
// setting is the graph, already compiled: one entry per chunk with the exact argument list, the
// task type that routes it to CPU or GPU workers, and the ids of the tasks it waits for.

const JOB_TYPE = {
    label: "farmplug",
    description: "Cheap Cycles render plus AI post tasks, compiled by farmplug",
    settings: [
        {
            key: "tasks",
            type: "string",
            required: true,
            visible: "hidden",
            description: "JSON list of {id, type, exe, args, depends_on} written by farmplug",
        },
    ],
};

function compileJob(job) {
    const specs = JSON.parse(job.settings.tasks);
    const created = {};
    for (const spec of specs) {
        // "exec" starts spec.exe with spec.args as they are: no shell sees them.
        const task = author.Task(spec.id, spec.type);
        task.addCommand(author.Command("exec", { exe: spec.exe, args: spec.args }));
        for (const dependency of spec.depends_on) {
            const upstream = created[dependency];
            if (upstream === undefined) {
                throw new Error("task " + spec.id + " depends on " + dependency + ", which is not listed before it");
            }
            task.addDependency(upstream);
        }
        job.addTask(task);
        created[spec.id] = task;
    }
}
